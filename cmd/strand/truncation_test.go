package main

import (
	"strings"
	"testing"

	"github.com/strand-ml/strand/finetune"
)

func TestTruncationWarning(t *testing.T) {
	exs := []finetune.Example{{Tokens: make([]int32, 12)}, {Tokens: make([]int32, 5)}}
	if w := truncationWarning(exs, 0, 16); w != "" {
		t.Errorf("nothing cut: %q", w)
	}
	if w := truncationWarning(exs, 1, 8); !strings.Contains(w, "--seq 8 truncates 1 of 2 training examples") || !strings.Contains(w, "needs --seq 11") {
		t.Errorf("one cut: %q", w)
	}
	if w := truncationWarning(exs, 2, 3); !strings.Contains(w, "truncates every training example (2)") {
		t.Errorf("all cut: %q", w)
	}
}
