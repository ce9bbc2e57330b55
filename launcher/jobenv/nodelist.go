package jobenv

import (
	"fmt"
	"strconv"
	"strings"
)

// ExpandNodeList expands a Slurm host list such as "gpu[01-03,7],login1"
// into its host names, in order: gpu01 gpu02 gpu03 gpu7 login1. Ranges keep
// their zero padding. Several bracket groups in one name
// ("rack[1-2]-n[1-2]") expand as a cross product.
func ExpandNodeList(list string) ([]string, error) {
	if strings.TrimSpace(list) == "" {
		return nil, fmt.Errorf("SLURM_NODELIST is empty")
	}
	var out []string
	for _, item := range splitTop(list) {
		hosts, err := expandOne(item)
		if err != nil {
			return nil, fmt.Errorf("node list %q: %w", list, err)
		}
		out = append(out, hosts...)
	}
	return out, nil
}

// splitTop splits on commas that are outside brackets.
func splitTop(s string) []string {
	var out []string
	depth, start := 0, 0
	for i, c := range s {
		switch c {
		case '[':
			depth++
		case ']':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	out = append(out, s[start:])
	var clean []string
	for _, x := range out {
		if x = strings.TrimSpace(x); x != "" {
			clean = append(clean, x)
		}
	}
	return clean
}

func expandOne(item string) ([]string, error) {
	open := strings.IndexByte(item, '[')
	if open < 0 {
		if strings.ContainsRune(item, ']') {
			return nil, fmt.Errorf("unbalanced ] in %q", item)
		}
		return []string{item}, nil
	}
	end := strings.IndexByte(item[open:], ']')
	if end < 0 {
		return nil, fmt.Errorf("unbalanced [ in %q", item)
	}
	end += open
	prefix, body, rest := item[:open], item[open+1:end], item[end+1:]
	tails, err := expandOne(rest)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, r := range strings.Split(body, ",") {
		lo, hi, found := strings.Cut(r, "-")
		if !found {
			hi = lo
		}
		a, err1 := strconv.Atoi(lo)
		b, err2 := strconv.Atoi(hi)
		if err1 != nil || err2 != nil || a > b || lo == "" {
			return nil, fmt.Errorf("bad range %q in %q", r, item)
		}
		if b-a > 100000 {
			return nil, fmt.Errorf("range %q in %q is too large", r, item)
		}
		for n := a; n <= b; n++ {
			num := fmt.Sprintf("%0*d", len(lo), n)
			for _, t := range tails {
				out = append(out, prefix+num+t)
			}
		}
	}
	return out, nil
}
