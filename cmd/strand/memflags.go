package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/strand-ml/strand/data"
	"github.com/strand-ml/strand/memplan"
	"github.com/strand-ml/strand/mesh"
	"github.com/strand-ml/strand/trainer"
)

// memFlags are --plan and --max-mem-per-rank: the memory plan of a
// training job (package memplan), printed instead of training or checked
// against a limit before any process starts or any model is allocated.
type memFlags struct {
	plan   bool
	maxMem string
}

func (f *memFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&f.plan, "plan", false, "print each rank's predicted memory (parameters, gradients, optimizer, activations, communication, other) per pipeline stage and exit without training")
	fs.StringVar(&f.maxMem, "max-mem-per-rank", "", "refuse to start a job whose plan needs more than this per rank (e.g. 12GiB, 800MB)")
}

// apply prints the plan (--plan: done is true, the command exits 0) or
// refuses a plan over --max-mem-per-rank; with neither flag it does
// nothing. threads is --threads (0: shared among the job's processes, as
// workers take them) and data the planned resident bytes of the training
// data per process.
func (f *memFlags) apply(opts trainer.Options, m mesh.Mesh, threads int, data int64, logFormat string, stdout io.Writer) (done bool, err error) {
	if !f.plan && f.maxMem == "" {
		return false, nil
	}
	if opts.VirtualStages > 1 {
		// memplan lays a stage out as one range of blocks with 1F1B's
		// activation slots; chunks hold more slots of fewer blocks
		return false, usageError{fmt.Sprintf("--plan and --max-mem-per-rank do not model --virtual-stages %d yet (the plan counts one chunk per stage); run without them", opts.VirtualStages)}
	}
	var limit int64
	if f.maxMem != "" {
		if limit, err = memplan.ParseBytes(f.maxMem); err != nil {
			return false, usageError{"--max-mem-per-rank: " + err.Error()}
		}
	}
	c := planConfig(opts, m, threads, data)
	stages, err := memplan.Plan(c)
	if err != nil {
		return false, usageError{fmt.Sprintf("memory plan: %v", err)}
	}
	if f.plan && logFormat == "json" {
		// one object: {"memory_plan": {"describe", "stages", "largest"}}
		plan := map[string]any{"describe": c.Describe(), "stages": stages, "largest": memplan.MaxRank(stages)}
		if limit > 0 {
			plan["limit"] = limit
		}
		return true, json.NewEncoder(stdout).Encode(map[string]any{"memory_plan": plan})
	}
	if f.plan {
		if err := memplan.Write(stdout, c, stages); err != nil {
			return false, err
		}
		if err := memplan.CheckLimit(c, stages, limit); err != nil {
			fmt.Fprintf(stdout, "over the limit: %v\n", err)
		}
		return true, nil
	}
	if err := memplan.CheckLimit(c, stages, limit); err != nil {
		return false, usageError{err.Error()}
	}
	return false, nil
}

// planConfig is the memory plan of a trainer built from opts on mesh m.
func planConfig(opts trainer.Options, m mesh.Mesh, threads int, data int64) memplan.Config {
	if threads == 0 {
		threads = runtime.NumCPU()
		if m.World() > 1 {
			threads = max(1, runtime.NumCPU()/m.World()) // asWorker's share
		}
	}
	zero := opts.Zero
	if opts.DP.ZeRO1 {
		zero = 1
	}
	grad := ""
	switch {
	case opts.DP.BF16:
		grad = "bf16"
	case opts.DP.FP8 != "":
		grad = opts.DP.FP8
	}
	return memplan.Config{
		Model: opts.Model, Mesh: m, Zero: zero, ShardGroup: opts.ShardGroup, ReshardAfterForward: !opts.KeepGathered, ZeroMinUnit: opts.ZeroMinUnit,
		Recompute: opts.Recompute, Batch: opts.Batch, Micro: opts.Micro, Seq: opts.Seq,
		Precision: opts.Precision, Schedule: opts.Schedule, StageLayers: opts.StageLayers,
		BucketBytes: opts.DP.BucketBytes, GradCompress: grad, Threads: threads, Data: data,
	}
}

// trainDataBytes estimates the resident bytes of train's data in each
// process. An llm.c shard is its uint16 tokens. Text is tokenized file by
// file into an []int before the uint16 corpus grows by appending, and
// the garbage stays resident (the heap's next collection is far away
// under a model's buffers): measured, about textSlack bytes per byte for
// one text file, dirSlack for a tree of many (the Go sources).
func trainDataBytes(f *trainFlags) int64 {
	size, slack := int64(data.DefaultMaxBytes), int64(dirSlack)
	if f.dataSpec != "" {
		size = specBytes(f.dataSpec)
		if info, err := os.Stat(f.dataSpec); err == nil && info.Mode().IsRegular() {
			slack = textSlack
		}
	}
	if f.maxDataBytes > 0 {
		size = min(size, f.maxDataBytes)
	}
	if strings.HasSuffix(f.dataSpec, ".bin") {
		return size // already uint16 tokens
	}
	return slack * size
}

// Resident bytes per byte of text data (bench/RESULTS.md, memory).
const (
	textSlack = 18 // one file: its []int ids, the text, the corpus's growth
	dirSlack  = 9  // many small files: the corpus and its growth dominate
	dataSlack = textSlack
)

// specBytes is the size of the files a --data spec names (a file, a
// directory, a glob); 0 if none can be read.
func specBytes(spec string) int64 {
	paths := []string{spec}
	if strings.ContainsAny(spec, "*?[") {
		paths, _ = filepath.Glob(spec)
	}
	var n int64
	for _, p := range paths {
		filepath.WalkDir(p, func(_ string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				if info, err := d.Info(); err == nil {
					n += info.Size()
				}
			}
			return nil
		})
	}
	return n
}

// memPlan is --plan and --max-mem-per-rank for the fine-tuning commands
// that build one trainer (sft, dpo, rm train): dpo and rm train read two
// rows (chosen, rejected) per pair of --batch. LoRA's frozen base and
// adapters are not planned yet: such a plan is refused rather than wrong.
func (f *ftFlags) memPlan(name string, m mesh.Mesh, stdout io.Writer) (done bool, err error) {
	if !f.mem.plan && f.mem.maxMem == "" {
		return false, nil
	}
	if f.loraRank > 0 {
		return false, usageError{"--plan and --max-mem-per-rank do not model LoRA (--lora-rank) yet"}
	}
	batch := f.batch
	if name == "dpo" || name == "rm train" {
		f.batch *= 2
		defer func() { f.batch = batch }()
	}
	opts, err := f.options(m)
	if err != nil {
		return false, err
	}
	return f.mem.apply(opts, m, f.threads, dataSlack*specBytes(f.dataPath), f.launch.LogFormat, stdout)
}
