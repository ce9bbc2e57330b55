package worker

import (
	"os/exec"
	"strings"
	"testing"
)

// The worker runtime does not depend on the launcher (issue 15 point 6):
// they share only the job's environment contract, launcher/jobenv. A
// merge brought the import back once for two constants.
func TestWorkerDoesNotImportLauncher(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep == "github.com/strand-ml/strand/launcher" {
			t.Fatal("package worker depends on package launcher")
		}
	}
}
