package main

import (
	"context"
	"flag"
	"io"

	"github.com/strand-ml/strand/model"
)

// ropeScalingFlags set a RoPE model's rope_scaling: at training time (saved
// in config.json) or to override a checkpoint's at eval/generate time, which
// is how a model trained at n_positions is run at 2x or 4x.
type ropeScalingFlags struct {
	kind   string
	factor float64
	orig   int
}

func (r *ropeScalingFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&r.kind, "rope-scaling", "", "rope: context extension: linear, ntk or yarn (none: \"\"; \"off\" removes a checkpoint's)")
	fs.Float64Var(&r.factor, "rope-factor", 0, "rope scaling factor (e.g. 2 to run at twice the trained length)")
	fs.IntVar(&r.orig, "rope-original-positions", 0, "rope scaling: the trained context (default: n_positions)")
}

// apply overrides cfg's rope_scaling when a flag was given.
func (r *ropeScalingFlags) apply(cfg *model.Config) {
	switch r.kind {
	case "":
		if r.factor != 0 && cfg.RopeScaling != nil {
			s := *cfg.RopeScaling
			s.Factor = r.factor
			cfg.RopeScaling = &s
		}
		return
	case "off", "none":
		cfg.RopeScaling = nil
		return
	}
	orig := r.orig
	if orig == 0 {
		orig = cfg.NPositions
	}
	cfg.RopeScaling = &model.RopeScaling{Type: r.kind, Factor: r.factor, OriginalMaxPositionEmbeddings: orig}
}

// runGenerate streams text from a checkpoint to stdout (flags and steps
// in generate_flags.go).
func runGenerate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("generate", stderr)
	var f genFlags
	f.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ids, err := f.check()
	if err != nil {
		return err
	}
	g, opts, err := f.generator(ids, stderr)
	if err != nil {
		return err
	}
	switch {
	case f.jsonOut:
		if ids == nil {
			ids = g.Tok.Encode([]byte(f.prompt))
		}
		return generateJSON(ctx, g, ids, opts, stdout)
	case ids != nil:
		return f.generateIDs(ctx, g, ids, opts, stdout, stderr)
	}
	return f.generateText(ctx, g, opts, stdout, stderr)
}
