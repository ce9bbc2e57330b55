package progress

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// Mode selects how the bar is drawn.
type Mode int

const (
	Auto     Mode = iota // Terminal if w is a terminal, else Plain
	Terminal             // redraw one line in place
	Plain                // one line every Options.Every steps
	JSON                 // one JSON object every Options.Every steps (--log-format json)
)

// Options configure a Bar; the zero value is ready to use.
type Options struct {
	Desc     string           // label before the counter, e.g. "train"
	Width    int              // bar cells (terminal mode); default 24
	Every    int              // plain mode: print every Every steps; default (total-Start)/20, or 10 if total is unknown
	Interval time.Duration    // terminal mode: minimum time between redraws; default 100ms
	Mode     Mode             // Auto detects a terminal
	Start    int              // first step of this run (resume); ETA counts from here
	Now      func() time.Time // clock; default time.Now
}

// Stats are the numbers shown for a step. Zero fields are omitted.
type Stats struct {
	Loss         float64
	TokensPerSec float64
	MFU          float64 // model FLOPs utilization as a fraction (0.25 shows as 25.0%)
	LR           float64
	GradNorm     float64
	// Extra are an objective's own statistics (a DPO margin, a PPO
	// reward), shown after the standard ones in their order.
	Extra []Field
}

// Field is one named statistic of Stats.Extra.
type Field struct {
	Name   string  // label, e.g. "reward"
	Value  float64 //
	Format string  // fmt verb for Value; default "%.4g"
}

// Bar is a progress line. It is safe for concurrent use.
type Bar struct {
	mu       sync.Mutex
	w        io.Writer
	total    int
	opts     Options
	term     bool
	start    time.Time
	lastDraw time.Time
	drawn    bool // something is on the current terminal line
	step     int
	stats    Stats
	err      error // first write error; later draws are skipped
}

// New returns a bar for steps Options.Start+1 .. total written to w.
// total <= 0 means unknown (no bar, no ETA).
func New(w io.Writer, total int, opts Options) *Bar {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Width <= 0 {
		opts.Width = 24
	}
	if opts.Interval <= 0 {
		opts.Interval = 100 * time.Millisecond
	}
	if opts.Every <= 0 {
		opts.Every = 10 // unknown total
		if total > 0 {
			opts.Every = max(1, (total-opts.Start)/20) // about 20 lines per run
		}
	}
	b := &Bar{w: w, total: total, opts: opts, start: opts.Now(), step: opts.Start}
	switch opts.Mode {
	case Terminal:
		b.term = true
	case Auto:
		b.term = isTerminal(w)
	}
	return b
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// Update records that step (1-based, counting to total) finished with s,
// and redraws if due.
func (b *Bar) Update(step int, s Stats) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.step, b.stats = step, s
	now := b.opts.Now()
	if b.term {
		if step >= b.total && b.total > 0 || !b.drawn || now.Sub(b.lastDraw) >= b.opts.Interval {
			b.write("\r" + b.render(now) + "\x1b[K")
			b.drawn = true
			b.lastDraw = now
		}
		return
	}
	done := step - b.opts.Start
	if done == 1 || done%b.opts.Every == 0 || (b.total > 0 && step == b.total) {
		b.write(b.line(now) + "\n")
	}
}

// line is a plain line or, in JSON mode, the same facts as one object.
func (b *Bar) line(now time.Time) string {
	if b.opts.Mode == JSON {
		return b.renderJSON(now)
	}
	return b.render(now)
}

// Println prints a message on its own line (e.g. a validation result)
// without garbling the bar; on a terminal the bar is redrawn below it.
func (b *Bar) Println(msg string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.term && b.drawn {
		b.write("\r\x1b[K" + msg + "\n" + b.render(b.opts.Now()) + "\x1b[K")
		return
	}
	if b.opts.Mode == JSON {
		raw, _ := json.Marshal(map[string]string{"msg": msg})
		msg = string(raw)
	}
	b.write(msg + "\n")
}

// Finish draws the final state and ends the line. It returns the first
// error met while writing, if any.
func (b *Bar) Finish() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.opts.Now()
	if b.term {
		b.write("\r" + b.render(now) + "\x1b[K\n")
		b.drawn = false
	} else if b.lastPlainStep() != b.step {
		b.write(b.line(now) + "\n")
	}
	return b.err
}

// lastPlainStep is the last step that plain mode printed in Update.
func (b *Bar) lastPlainStep() int {
	done := b.step - b.opts.Start
	if done <= 0 || done == 1 || done%b.opts.Every == 0 || (b.total > 0 && b.step == b.total) {
		return b.step
	}
	return -1
}

func (b *Bar) write(s string) {
	if b.err != nil {
		return
	}
	_, b.err = io.WriteString(b.w, s)
}

// render formats one line, e.g.
//
//	train  120/1000 [##########-----------] 12% loss 3.4521 | 4,512 tok/s | MFU 23.1% | 00:12<01:48
func (b *Bar) render(now time.Time) string {
	var sb strings.Builder
	if b.opts.Desc != "" {
		sb.WriteString(b.opts.Desc)
		sb.WriteString(" ")
	}
	if b.total > 0 {
		frac := min(1, max(0, float64(b.step)/float64(b.total)))
		digits := len(fmt.Sprint(b.total))
		fmt.Fprintf(&sb, "%*d/%d ", digits, b.step, b.total)
		if b.term {
			full := int(frac * float64(b.opts.Width))
			sb.WriteString("[" + strings.Repeat("#", full) + strings.Repeat("-", b.opts.Width-full) + "] ")
		}
		fmt.Fprintf(&sb, "%3d%%", int(frac*100))
	} else {
		fmt.Fprintf(&sb, "step %d", b.step)
	}
	s := b.stats
	var parts []string
	if s.Loss != 0 {
		parts = append(parts, fmt.Sprintf("loss %.4f", s.Loss))
	}
	if s.TokensPerSec != 0 {
		parts = append(parts, groupThousands(s.TokensPerSec)+" tok/s")
	}
	if s.MFU != 0 {
		parts = append(parts, fmt.Sprintf("MFU %.1f%%", 100*s.MFU))
	}
	if s.LR != 0 {
		parts = append(parts, fmt.Sprintf("lr %.2e", s.LR))
	}
	if s.GradNorm != 0 {
		parts = append(parts, fmt.Sprintf("gnorm %.3f", s.GradNorm))
	}
	for _, f := range s.Extra {
		parts = append(parts, f.Name+" "+fmt.Sprintf(f.format(), f.Value))
	}
	elapsed := now.Sub(b.start)
	timing := formatDuration(elapsed)
	if done := b.step - b.opts.Start; b.total > 0 && done > 0 {
		left := b.total - b.step
		eta := time.Duration(float64(elapsed) / float64(done) * float64(max(0, left)))
		timing += "<" + formatDuration(eta)
	}
	parts = append(parts, timing)
	sb.WriteString(" ")
	sb.WriteString(strings.Join(parts, " | "))
	return sb.String()
}

func (f Field) format() string {
	if f.Format == "" {
		return "%.4g"
	}
	return f.Format
}

// renderJSON is one progress object: {"progress": desc, "step", "total",
// the non-zero statistics, "elapsed_s", "eta_s"}.
func (b *Bar) renderJSON(now time.Time) string {
	s := b.stats
	rec := map[string]any{"progress": b.opts.Desc, "step": b.step}
	if b.total > 0 {
		rec["total"] = b.total
	}
	for k, v := range map[string]float64{"loss": s.Loss, "tokens_per_s": s.TokensPerSec, "mfu": s.MFU, "lr": s.LR, "grad_norm": s.GradNorm} {
		if v != 0 && !math.IsNaN(v) && !math.IsInf(v, 0) {
			rec[k] = v
		}
	}
	for _, f := range s.Extra {
		if !math.IsNaN(f.Value) && !math.IsInf(f.Value, 0) {
			rec[f.Name] = f.Value
		}
	}
	elapsed := now.Sub(b.start)
	rec["elapsed_s"] = math.Round(elapsed.Seconds()*1000) / 1000
	if done := b.step - b.opts.Start; b.total > 0 && done > 0 {
		rec["eta_s"] = math.Round(elapsed.Seconds()/float64(done)*float64(max(0, b.total-b.step))*1000) / 1000
	}
	raw, err := json.Marshal(rec)
	if err != nil {
		return fmt.Sprintf(`{"progress":%q,"error":%q}`, b.opts.Desc, err.Error())
	}
	return string(raw)
}

// formatDuration prints MM:SS, or H:MM:SS from an hour on.
func formatDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	sec := int64(d.Round(time.Second) / time.Second)
	h, m, s := sec/3600, sec/60%60, sec%60
	if h > 0 {
		return fmt.Sprintf("%d:%02d:%02d", h, m, s)
	}
	return fmt.Sprintf("%02d:%02d", m, s)
}

// groupThousands prints a rounded number with comma separators: 12,345.
func groupThousands(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Sprint(v)
	}
	n := int64(math.Round(v))
	sign := ""
	if n < 0 {
		sign, n = "-", -n
	}
	s := fmt.Sprint(n)
	var out []byte
	for i := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return sign + string(out)
}

// Count formats a count with a k/M/G suffix: 1.3k, 2.50M, 1.20G.
func Count(x float64) string {
	switch {
	case x >= 1e9:
		return fmt.Sprintf("%.2fG", x/1e9)
	case x >= 1e6:
		return fmt.Sprintf("%.2fM", x/1e6)
	case x >= 1e3:
		return fmt.Sprintf("%.1fk", x/1e3)
	}
	return fmt.Sprintf("%.0f", x)
}
