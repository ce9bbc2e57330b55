package obs

import (
	"fmt"
	"io"
	"os"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// NewLogger returns a zap logger writing to w in format "console" (human
// readable, the default) or "json". A rank >= 0 is attached to every line as
// the field "rank"; pass -1 for the launcher or coordinator.
func NewLogger(format string, rank int, w io.Writer) (*zap.Logger, error) {
	if w == nil {
		w = os.Stderr
	}
	cfg := zap.NewProductionEncoderConfig()
	cfg.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	switch format {
	case "", "console":
		cfg.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(cfg)
	case "json":
		enc = zapcore.NewJSONEncoder(cfg)
	default:
		return nil, fmt.Errorf("log format %q: want console or json", format)
	}
	core := zapcore.NewCore(enc, zapcore.AddSync(w), zap.InfoLevel)
	log := zap.New(core)
	if rank >= 0 {
		log = log.With(zap.Int("rank", rank))
	}
	return log, nil
}
