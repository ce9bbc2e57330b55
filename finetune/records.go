package finetune

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/strand-ml/strand/hf"
)

// Message is one turn of a chat record.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Record is one JSONL line: an SFT example (Prompt/Response, Messages, or
// an Alpaca Instruction/Input/Output) or a preference pair
// (Prompt/Chosen/Rejected).
type Record struct {
	Line     int       `json:"-"` // 1-based line number in its file
	Prompt   string    `json:"prompt"`
	Response string    `json:"response"`
	Messages []Message `json:"messages"`
	Chosen   string    `json:"chosen"`
	Rejected string    `json:"rejected"`
	// Alpaca (Stanford Alpaca's records): parsed into Prompt (its prompt
	// format, or a user turn under a chat template) and Response.
	Instruction string `json:"instruction"`
	Input       string `json:"input"`
	Output      string `json:"output"`
}

// Kind is what a file's records must be.
type Kind int

const (
	SFT     Kind = iota // {"prompt","response"}, {"messages":[...]} or Alpaca's {"instruction","input","output"}
	Pair                // {"prompt","chosen","rejected"}
	Prompts             // {"prompt"} (other fields of SFT or pair records are ignored): PPO's prompts
)

// Policy says what a malformed line does.
type Policy string

const (
	Skip Policy = "skip" // report it (line number and reason) and go on
	Fail Policy = "fail" // stop with an error naming the line
)

// ParsePolicy checks a --on-bad-record value.
func ParsePolicy(s string) (Policy, error) {
	switch Policy(s) {
	case Skip, Fail:
		return Policy(s), nil
	}
	return "", fmt.Errorf("--on-bad-record %q: want skip or fail", s)
}

// BadRecord is a line that was not used.
type BadRecord struct {
	Line int
	Err  error
}

func (b BadRecord) String() string { return fmt.Sprintf("line %d: %v", b.Line, b.Err) }

// Report accounts for every line read: Records + Skipped + Blank == Lines.
type Report struct {
	Lines   int
	Records int
	Skipped int // malformed lines (listed in Bad)
	Blank   int // empty or whitespace-only lines
	Bad     []BadRecord
}

// ErrBadRecord is wrapped by the error a Fail policy returns.
var ErrBadRecord = errors.New("bad record")

// ReadJSONL reads one record per line. Malformed lines (bad JSON, missing
// or unexpected fields for kind) are listed in the report and skipped, or,
// with Fail, end the read with an error naming the line.
func ReadJSONL(r io.Reader, kind Kind, policy Policy) ([]Record, Report, error) {
	var out []Record
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
		rec, err := parseRecord(line, kind)
		if err != nil {
			if policy == Fail {
				return nil, rep, fmt.Errorf("line %d: %w: %v", rep.Lines, ErrBadRecord, err)
			}
			rep.Skipped++
			rep.Bad = append(rep.Bad, BadRecord{Line: rep.Lines, Err: err})
			continue
		}
		rec.Line = rep.Lines
		out = append(out, rec)
		rep.Records++
	}
	if err := sc.Err(); err != nil {
		return nil, rep, fmt.Errorf("line %d: %w", rep.Lines+1, err)
	}
	return out, rep, nil
}

func parseRecord(line []byte, kind Kind) (Record, error) {
	var rec Record
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rec); err != nil {
		return rec, fmt.Errorf("invalid JSON: %v", err)
	}
	if dec.More() {
		return rec, fmt.Errorf("trailing data after the JSON object")
	}
	switch kind {
	case Prompts:
		if rec.Prompt == "" {
			return rec, fmt.Errorf("needs a non-empty prompt")
		}
		return rec, nil
	case Pair:
		if rec.Messages != nil || rec.Response != "" {
			return rec, fmt.Errorf("a preference pair has prompt, chosen and rejected only")
		}
		if rec.Chosen == "" || rec.Rejected == "" {
			return rec, fmt.Errorf("a preference pair needs non-empty chosen and rejected")
		}
		return rec, nil
	}
	if rec.Chosen != "" || rec.Rejected != "" {
		return rec, fmt.Errorf("chosen/rejected belong to preference data, not SFT")
	}
	if rec.Instruction != "" || rec.Input != "" || rec.Output != "" {
		switch {
		case rec.Prompt != "" || rec.Response != "" || rec.Messages != nil:
			return rec, fmt.Errorf("an Alpaca record has instruction, input and output only")
		case rec.Instruction == "" || rec.Output == "":
			return rec, fmt.Errorf("an Alpaca record needs a non-empty instruction and output")
		}
		rec.Prompt, rec.Response = hf.AlpacaPrompt(rec.Instruction, rec.Input), rec.Output
	}
	if rec.Messages != nil {
		if rec.Prompt != "" || rec.Response != "" {
			return rec, fmt.Errorf("a record has either messages or prompt/response, not both")
		}
		assistant := false
		for i, m := range rec.Messages {
			switch m.Role {
			case "system", "user":
			case "assistant":
				if m.Content == "" {
					return rec, fmt.Errorf("message %d: empty assistant content", i)
				}
				assistant = true
			default:
				return rec, fmt.Errorf("message %d: role %q (want system, user or assistant)", i, m.Role)
			}
		}
		if !assistant {
			return rec, fmt.Errorf("no assistant message: nothing to train on")
		}
		return rec, nil
	}
	if rec.Response == "" {
		return rec, fmt.Errorf("needs a non-empty response (or messages)")
	}
	if strings.ContainsRune(rec.Prompt+rec.Response, 0) {
		return rec, fmt.Errorf("text contains a NUL character")
	}
	return rec, nil
}
