package relay

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// pionLogger sends pion's logs to slog. pion logs per packet at Info and
// Error (a stray datagram, a missing permission), which an Internet-facing
// relay sees all the time, so everything but warnings goes to Debug; the
// relay logs its own decisions itself.
type pionLogger struct{ log *slog.Logger }

func (f pionLogger) NewLogger(scope string) logging.LeveledLogger {
	return pionLeveled{f.log.With("pion", scope)}
}

type pionLeveled struct{ log *slog.Logger }

func (l pionLeveled) at(level slog.Level, msg string) {
	if l.log.Enabled(context.Background(), level) {
		l.log.Log(context.Background(), level, msg)
	}
}

func (l pionLeveled) atf(level slog.Level, format string, args ...any) {
	if l.log.Enabled(context.Background(), level) {
		l.log.Log(context.Background(), level, fmt.Sprintf(format, args...))
	}
}

const levelTrace = slog.LevelDebug - 4

func (l pionLeveled) Trace(msg string)                  { l.at(levelTrace, msg) }
func (l pionLeveled) Tracef(format string, args ...any) { l.atf(levelTrace, format, args...) }
func (l pionLeveled) Debug(msg string)                  { l.at(levelTrace, msg) }
func (l pionLeveled) Debugf(format string, args ...any) { l.atf(levelTrace, format, args...) }
func (l pionLeveled) Info(msg string)                   { l.at(slog.LevelDebug, msg) }
func (l pionLeveled) Infof(format string, args ...any)  { l.atf(slog.LevelDebug, format, args...) }
func (l pionLeveled) Warn(msg string)                   { l.at(slog.LevelWarn, msg) }
func (l pionLeveled) Warnf(format string, args ...any)  { l.atf(slog.LevelWarn, format, args...) }
func (l pionLeveled) Error(msg string)                  { l.at(slog.LevelDebug, msg) }
func (l pionLeveled) Errorf(format string, args ...any) { l.atf(slog.LevelDebug, format, args...) }
