package main

import (
	"fmt"

	"github.com/strand-ml/strand/finetune"
)

// truncationWarning says, when --seq cut training examples, how many and
// what --seq would keep them whole; "" when none was cut. Cutting every
// example trains on partial responses only: worth a warning of its own.
func truncationWarning(exs []finetune.Example, truncated, seq int) string {
	if truncated == 0 || len(exs) == 0 {
		return ""
	}
	longest := 0
	for _, ex := range exs {
		longest = max(longest, ex.Len())
	}
	what := fmt.Sprintf("%d of %d training examples", truncated, len(exs))
	if truncated == len(exs) {
		what = fmt.Sprintf("every training example (%d)", len(exs))
	}
	return fmt.Sprintf("warning: --seq %d truncates %s: their ends (responses and end-of-sequence) are cut off; the longest needs --seq %d", seq, what, longest)
}
