package bridge

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// pionLogs routes pion's logs into the bridge's logger. pion's default
// factory gives every scope six log.Loggers of its own, and a
// PeerConnection asks for about a dozen scopes: ≈ 20 KB per call of
// loggers that all write to stderr. These share the bridge's handler.
//
// Levels: pion logs an error where the bridge carries on (a closed
// buffer, a packet that failed to decrypt), so its errors are warnings
// here; its warnings and info (per-packet in places, e.g. SRTP replay)
// are debug. pion's default showed errors only.
type pionLogs struct{ l *slog.Logger }

// levelTrace is below slog's debug, for pion's trace logs.
const levelTrace = slog.LevelDebug - 4

func (f pionLogs) NewLogger(scope string) logging.LeveledLogger {
	return &pionLogger{l: f.l, scope: scope}
}

type pionLogger struct {
	l     *slog.Logger
	scope string
}

func (p *pionLogger) log(level slog.Level, msg string) {
	if p.l.Enabled(context.Background(), level) {
		p.l.Log(context.Background(), level, msg, "pion", p.scope)
	}
}

// logf formats only when the level is on: pion calls some of these per
// packet.
func (p *pionLogger) logf(level slog.Level, format string, args ...any) {
	if p.l.Enabled(context.Background(), level) {
		p.l.Log(context.Background(), level, fmt.Sprintf(format, args...), "pion", p.scope)
	}
}

func (p *pionLogger) Trace(msg string)                  { p.log(levelTrace, msg) }
func (p *pionLogger) Tracef(format string, args ...any) { p.logf(levelTrace, format, args...) }
func (p *pionLogger) Debug(msg string)                  { p.log(slog.LevelDebug, msg) }
func (p *pionLogger) Debugf(format string, args ...any) { p.logf(slog.LevelDebug, format, args...) }
func (p *pionLogger) Info(msg string)                   { p.log(slog.LevelDebug, msg) }
func (p *pionLogger) Infof(format string, args ...any)  { p.logf(slog.LevelDebug, format, args...) }
func (p *pionLogger) Warn(msg string)                   { p.log(slog.LevelDebug, msg) }
func (p *pionLogger) Warnf(format string, args ...any)  { p.logf(slog.LevelDebug, format, args...) }
func (p *pionLogger) Error(msg string)                  { p.log(slog.LevelWarn, msg) }
func (p *pionLogger) Errorf(format string, args ...any) { p.logf(slog.LevelWarn, format, args...) }
