// SPDX-License-Identifier: Apache-2.0

package testutil

import (
	"context"
	"log/slog"
	"sync"
)

// LogRecord is one recorded log line, its attributes as strings.
type LogRecord struct {
	Level slog.Level
	Msg   string
	Attrs map[string]string
}

// Logs records the lines of a logger, for tests that assert on logging.
// Safe for concurrent use.
type Logs struct {
	mu      sync.Mutex
	records []LogRecord
	changed chan struct{} // closed and replaced when a line is added; nil until Wait
}

// NewLogger returns a logger that records every line at Debug and above.
func NewLogger() (*slog.Logger, *Logs) {
	l := &Logs{}
	return slog.New(logHandler{logs: l}), l
}

// Records returns the lines recorded so far.
func (l *Logs) Records() []LogRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]LogRecord(nil), l.records...)
}

// Wait blocks until cond holds for the lines recorded so far, or ctx
// ends.
func (l *Logs) Wait(ctx context.Context, cond func([]LogRecord) bool) error {
	for {
		l.mu.Lock()
		if l.changed == nil {
			l.changed = make(chan struct{})
		}
		ch := l.changed
		recs := append([]LogRecord(nil), l.records...)
		l.mu.Unlock()
		if cond(recs) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Find returns the lines with this level and message.
func (l *Logs) Find(level slog.Level, msg string) []LogRecord {
	var out []LogRecord
	for _, r := range l.Records() {
		if r.Level == level && r.Msg == msg {
			out = append(out, r)
		}
	}
	return out
}

type logHandler struct {
	logs  *Logs
	attrs []slog.Attr
	group string
}

func (h logHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h logHandler) Handle(_ context.Context, r slog.Record) error {
	rec := LogRecord{Level: r.Level, Msg: r.Message, Attrs: map[string]string{}}
	add := func(a slog.Attr) bool {
		k := a.Key
		if h.group != "" {
			k = h.group + "." + k
		}
		rec.Attrs[k] = a.Value.Resolve().String()
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	h.logs.mu.Lock()
	h.logs.records = append(h.logs.records, rec)
	if h.logs.changed != nil {
		close(h.logs.changed)
		h.logs.changed = nil
	}
	h.logs.mu.Unlock()
	return nil
}

func (h logHandler) WithAttrs(as []slog.Attr) slog.Handler {
	h.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return h
}

func (h logHandler) WithGroup(name string) slog.Handler {
	if h.group != "" {
		name = h.group + "." + name
	}
	h.group = name
	return h
}
