// SPDX-License-Identifier: Apache-2.0

package limit

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
)

// TestLimiterWeighted: takers of several units are served on-demand
// first, each class in order, background ones within their share, and a
// taker asking for more than there is gets all of it.
func TestLimiterWeighted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := New(100, 50)
		took := func(c Class, n int64) chan int64 {
			ch := make(chan int64, 1)
			go func() {
				got, err := l.Acquire(t.Context(), c, n)
				if err != nil {
					t.Error(err)
				}
				ch <- got
			}()
			synctest.Wait()
			return ch
		}
		ready := func(ch chan int64) (int64, bool) {
			select {
			case n := <-ch:
				return n, true
			default:
				return 0, false
			}
		}
		if n, ok := ready(took(Background, 80)); !ok || n != 50 {
			t.Fatalf("background Acquire(80) = %d, %v; want 50 at once (clamped)", n, ok)
		}
		bg2 := took(Background, 10) // background is full
		if _, ok := ready(bg2); ok {
			t.Fatal("background went past its share")
		}
		if n, ok := ready(took(OnDemand, 40)); !ok || n != 40 {
			t.Fatalf("on-demand Acquire(40) = %d, %v; want 40 at once", n, ok)
		}
		big := took(OnDemand, 500) // clamped to 100: waits for everything
		small := took(OnDemand, 5) // in order: behind big, though 10 are free
		if _, ok := ready(big); ok {
			t.Fatal("on-demand Acquire(500) did not wait")
		}
		if _, ok := ready(small); ok {
			t.Fatal("a small taker passed a large one")
		}
		l.Release(Background, 50)
		synctest.Wait()
		if _, ok := ready(bg2); ok {
			t.Fatal("background served while on-demand takers wait")
		}
		l.Release(OnDemand, 40)
		synctest.Wait()
		if n, ok := ready(big); !ok || n != 100 {
			t.Fatalf("Acquire(500) = %d, %v after all was released; want 100", n, ok)
		}
		l.Release(OnDemand, 100)
		synctest.Wait()
		if _, ok := ready(small); !ok {
			t.Fatal("small taker not served")
		}
		if _, ok := ready(bg2); !ok {
			t.Fatal("background taker not served once on-demand ones were")
		}
		if p := l.Peak(); p != 100 {
			t.Errorf("peak %d, want 100", p)
		}
		// A large waiter that gives up lets the smaller ones behind it in.
		l.Release(OnDemand, 5)
		l.Release(Background, 10)
		hold, _ := l.Acquire(t.Context(), OnDemand, 60)
		ctx, cancel := context.WithCancel(t.Context())
		go func() { l.Acquire(ctx, OnDemand, 60) }()
		synctest.Wait()
		after := took(OnDemand, 30)
		if _, ok := ready(after); ok {
			t.Fatal("taker passed a waiting one")
		}
		cancel()
		synctest.Wait()
		if _, ok := ready(after); !ok {
			t.Fatal("taker still waits after the one ahead gave up")
		}
		l.Release(OnDemand, hold+30)
		if l.busy != 0 || l.bgBusy != 0 {
			t.Errorf("busy %d, %d after every release", l.busy, l.bgBusy)
		}
	})
}

func TestLimiterServesOnDemandFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := New(1, 1)
		if _, err := l.Acquire(t.Context(), Background, 1); err != nil {
			t.Fatal(err)
		}
		var order []string
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, who := range []string{"background", "on-demand"} {
			c := OnDemand
			if who == "background" {
				c = Background
			}
			wg.Go(func() {
				n, err := l.Acquire(t.Context(), c, 1)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				order = append(order, who)
				mu.Unlock()
				l.Release(c, n)
			})
			synctest.Wait() // queued in this order
		}
		l.Release(Background, 1)
		wg.Wait()
		if strings.Join(order, ",") != "on-demand,background" {
			t.Errorf("order = %v, want on-demand first", order)
		}

		// A waiter that gives up leaves no slot taken.
		hold, _ := l.Acquire(t.Context(), OnDemand, 1)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { _, err := l.Acquire(ctx, OnDemand, 1); done <- err }()
		synctest.Wait()
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Acquire after cancel = %v", err)
		}
		l.Release(OnDemand, hold)
		if n, err := l.Acquire(t.Context(), Background, 1); err != nil {
			t.Errorf("Acquire of a free limiter = %v", err)
		} else {
			l.Release(Background, n)
		}
	})
}
