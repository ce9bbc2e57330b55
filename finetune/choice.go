package finetune

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/strand-ml/strand/model"
)

// Choice is one multiple-choice question (HellaSwag-style): a context,
// candidate continuations and the index of the right one. JSONL lines may
// use HellaSwag's key names ("ctx", "endings") or "context", "choices".
type Choice struct {
	Line    int
	Context string
	Choices []string
	Label   int
}

// ReadChoices reads one question per line with the bad-record policy
// (bad JSON, fewer than two choices, an empty choice or a label out of
// range are malformed).
func ReadChoices(r io.Reader, policy Policy) ([]Choice, Report, error) {
	var out []Choice
	var rep Report
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 64<<20)
	for sc.Scan() {
		rep.Lines++
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			rep.Blank++
			continue
		}
		c, err := parseChoice(line)
		if err != nil {
			if policy == Fail {
				return nil, rep, fmt.Errorf("line %d: %w: %v", rep.Lines, ErrBadRecord, err)
			}
			rep.Skipped++
			rep.Bad = append(rep.Bad, BadRecord{Line: rep.Lines, Err: err})
			continue
		}
		c.Line = rep.Lines
		out = append(out, c)
		rep.Records++
	}
	if err := sc.Err(); err != nil {
		return nil, rep, fmt.Errorf("line %d: %w", rep.Lines+1, err)
	}
	return out, rep, nil
}

func parseChoice(line []byte) (Choice, error) {
	var raw struct {
		Ctx     *string  `json:"ctx"`
		Context *string  `json:"context"`
		Endings []string `json:"endings"`
		Choices []string `json:"choices"`
		Label   *int     `json:"label"`
	}
	if err := json.Unmarshal(line, &raw); err != nil {
		return Choice{}, fmt.Errorf("invalid JSON: %v", err)
	}
	var c Choice
	switch {
	case raw.Context != nil:
		c.Context = *raw.Context
	case raw.Ctx != nil:
		c.Context = *raw.Ctx
	default:
		return c, fmt.Errorf("needs a context (\"context\" or \"ctx\")")
	}
	c.Choices = raw.Choices
	if c.Choices == nil {
		c.Choices = raw.Endings
	}
	if len(c.Choices) < 2 {
		return c, fmt.Errorf("needs at least two choices (\"choices\" or \"endings\")")
	}
	for i, s := range c.Choices {
		if s == "" {
			return c, fmt.Errorf("choice %d is empty", i)
		}
	}
	if raw.Label == nil || *raw.Label < 0 || *raw.Label >= len(c.Choices) {
		return c, fmt.Errorf("needs a label in 0..%d", len(c.Choices)-1)
	}
	c.Label = *raw.Label
	return c, nil
}

// ChoiceResult summarizes a multiple-choice evaluation.
type ChoiceResult struct {
	Questions int     `json:"questions"`
	Accuracy  float64 `json:"accuracy"`      // argmax of the summed log-likelihood of each choice
	AccNorm   float64 `json:"accuracy_norm"` // argmax of the per-token mean (length-normalized)
	Truncated int     `json:"truncated"`     // questions whose context was cut from the left to fit
}

// ScoreChoices scores every choice by its log-likelihood given the context
// under m (a whole single-process model; one row per choice, so MaxB must
// hold the most choices of any question) and returns the accuracies. A
// context too long for m.MaxT loses its beginning.
func ScoreChoices(ctx context.Context, m *model.GPT, enc Encoder, qs []Choice) (ChoiceResult, error) {
	var res ChoiceResult
	if !m.Layout.First || !m.Layout.Last {
		return res, fmt.Errorf("multiple choice needs the whole model on one rank")
	}
	T := m.MaxT
	a := m.NewActs(m.MaxB, T)
	for _, q := range qs {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if len(q.Choices) > m.MaxB {
			return res, fmt.Errorf("line %d: %d choices, the model holds batches of %d", q.Line, len(q.Choices), m.MaxB)
		}
		ctxTok := enc.Tok.Encode([]byte(q.Context))
		B := len(q.Choices)
		in, tg := make([]int32, B*T), make([]int32, B*T)
		counts := make([]int, B)
		cut := false
		for b, s := range q.Choices {
			opt := enc.Tok.Encode([]byte(s))
			if len(opt) >= T {
				return res, fmt.Errorf("line %d: choice %d has %d tokens, more than the model's %d positions", q.Line, b, len(opt), T)
			}
			c := ctxTok
			if len(c)+len(opt) > T+1 {
				c, cut = c[len(c)+len(opt)-T-1:], true
			}
			toks := append(append([]int(nil), c...), opt...)
			row := in[b*T : (b+1)*T]
			trow := tg[b*T : (b+1)*T]
			for i := range row {
				row[i], trow[i] = enc.EOS, ignoreIndex
			}
			for i := 0; i+1 < len(toks); i++ {
				row[i] = int32(toks[i])
				if i+1 >= len(c) {
					trow[i] = int32(toks[i+1])
				}
			}
			counts[b] = len(opt)
			if len(c) == 0 { // no context: the first option token has no prediction
				counts[b]--
			}
		}
		if cut {
			res.Truncated++
		}
		if _, _, err := m.ForwardActs(ctx, a, in, nil, tg, B, T); err != nil {
			return res, fmt.Errorf("line %d: %w", q.Line, err)
		}
		losses := a.Losses()
		best, bestNorm := -1, -1
		var bestLP, bestMean float64
		for b := 0; b < B; b++ {
			lp := rowLogProb(tg[b*T:(b+1)*T], losses[b*T:(b+1)*T])
			mean := lp / float64(max(1, counts[b]))
			if best < 0 || lp > bestLP {
				best, bestLP = b, lp
			}
			if bestNorm < 0 || mean > bestMean {
				bestNorm, bestMean = b, mean
			}
		}
		if best == q.Label {
			res.Accuracy++
		}
		if bestNorm == q.Label {
			res.AccNorm++
		}
		res.Questions++
	}
	if res.Questions == 0 {
		return res, fmt.Errorf("multiple choice: no questions")
	}
	res.Accuracy /= float64(res.Questions)
	res.AccNorm /= float64(res.Questions)
	return res, nil
}
