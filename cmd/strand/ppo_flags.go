package main

import (
	"flag"

	"github.com/strand-ml/strand/parallel/pipeline"
)

// ppoSchedule makes ppo -h say what ppo runs: GPipe only (the shared
// fine-tuning flags default to 1F1B, which ppo refuses).
func ppoSchedule(fs *flag.FlagSet, f *ftFlags) {
	f.schedule = pipeline.GPipe
	if fl := fs.Lookup("schedule"); fl != nil {
		fl.DefValue = pipeline.GPipe
		fl.Usage = "pipeline schedule: ppo runs gpipe only (each pass's losses need every forward before any backward)"
	}
}
