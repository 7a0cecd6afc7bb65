// SPDX-License-Identifier: Apache-2.0

package logthrottle

import (
	"log/slog"
	"sync"
	"testing"
	"time"
)

func TestLevel(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tests := []struct {
		name string
		key  string
		at   time.Duration // after t0
		want slog.Level
	}{
		{"first of a", "a", 0, slog.LevelWarn},
		{"repeat of a", "a", 500 * time.Millisecond, slog.LevelDebug},
		{"first of b", "b", 600 * time.Millisecond, slog.LevelWarn},
		{"a just before the quiet period ends", "a", 999 * time.Millisecond, slog.LevelDebug},
		{"a once it ended", "a", time.Second, slog.LevelWarn},
		{"repeats did not extend it", "a", 2 * time.Second, slog.LevelWarn},
		{"b within its own period", "b", 1500 * time.Millisecond, slog.LevelDebug},
	}
	th := New[string](time.Second, 10)
	for _, tt := range tests {
		if got := th.Level(tt.key, t0.Add(tt.at)); got != tt.want {
			t.Errorf("%s: Level(%q, t0+%v) = %v, want %v", tt.name, tt.key, tt.at, got, tt.want)
		}
	}
}

func TestLevelForgetsBeyondMax(t *testing.T) {
	now := time.Unix(1000, 0)
	th := New[int](time.Hour, 3)
	for k := range 3 {
		th.Level(k, now)
	}
	if got := th.Level(0, now); got != slog.LevelDebug {
		t.Fatalf("Level(0) with 3 keys remembered = %v, want Debug", got)
	}
	th.Level(3, now) // a fourth key: all are forgotten first
	if got := th.Level(0, now); got != slog.LevelWarn {
		t.Errorf("Level(0) after a fourth key = %v, want Warn (forgotten)", got)
	}
	if n := len(th.last); n > 3 {
		t.Errorf("%d keys remembered, want at most 3", n)
	}
}

func TestLevelConcurrentOneWarn(t *testing.T) {
	now := time.Unix(1000, 0)
	th := New[string](time.Second, 10)
	var mu sync.Mutex
	warns := 0
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if th.Level("k", now) == slog.LevelWarn {
				mu.Lock()
				warns++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if warns != 1 {
		t.Errorf("20 concurrent repeats gave %d Warns, want 1", warns)
	}
}
