// SPDX-License-Identifier: Apache-2.0

package flight

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

func TestGroupDoDeduplicates(t *testing.T) {
	g := New[string, int](t.Context())
	defer g.Close()
	var calls atomic.Int32
	release := make(chan struct{})
	started := make(chan struct{})
	var once sync.Once
	fn := func(ctx context.Context) (int, error) {
		calls.Add(1)
		once.Do(func() { close(started) })
		<-release
		return 42, nil
	}
	var wg sync.WaitGroup
	results := make(chan int, 10)
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := g.Do(t.Context(), "k", fn)
			if err != nil {
				t.Errorf("Do() error = %v", err)
			}
			results <- v
		}()
	}
	<-started
	for g.waiters("k") < 10 {
		runtime.Gosched()
	}
	close(release)
	wg.Wait()
	close(results)
	for v := range results {
		if v != 42 {
			t.Errorf("Do() = %d, want 42", v)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("fn ran %d times, want 1", n)
	}
}

// waiters returns how many callers joined the call for key in flight.
func (g *Group[K, V]) waiters(key K) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c, ok := g.calls[key]; ok {
		return c.waiters
	}
	return 0
}

// waiting reports whether a call for key is in flight.
func (g *Group[K, V]) waiting(key K) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	_, ok := g.calls[key]
	return ok
}

func TestGroupDoCallerCancelDoesNotAbortCall(t *testing.T) {
	g := New[string, int](t.Context())
	defer g.Close()
	release := make(chan struct{})
	var sawCancel atomic.Bool
	fn := func(ctx context.Context) (int, error) {
		select {
		case <-release:
			return 7, nil
		case <-ctx.Done():
			sawCancel.Store(true)
			return 0, ctx.Err()
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { _, err := g.Do(ctx, "k", fn); errc <- err }()
	for !g.waiting("k") {
		runtime.Gosched()
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller got %v, want context.Canceled", err)
	}
	// A second caller joins the same, still running call.
	done := make(chan int, 1)
	go func() { v, _ := g.Do(t.Context(), "k", fn); done <- v }()
	close(release)
	if v := <-done; v != 7 || sawCancel.Load() {
		t.Fatalf("second caller got %d (call cancelled: %v), want 7", v, sawCancel.Load())
	}
}

func TestGroupCloseCancelsAndWaits(t *testing.T) {
	g := New[int, int](t.Context())
	started := make(chan struct{})
	var returned atomic.Bool
	go g.Do(t.Context(), 1, func(ctx context.Context) (int, error) {
		close(started)
		<-ctx.Done()
		returned.Store(true)
		return 0, ctx.Err()
	})
	<-started
	g.Close()
	if !returned.Load() {
		t.Fatal("Close returned before the call did")
	}
	g.Close() // idempotent
	if _, err := g.Do(t.Context(), 2, func(context.Context) (int, error) { return 1, nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("Do after Close = %v, want context.Canceled", err)
	}
}
