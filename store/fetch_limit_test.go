// SPDX-License-Identifier: Apache-2.0

package store

import (
	"context"
	"testing"
	"testing/synctest"
)

// TestLimiterWeighted: takers of several units are served on-demand
// first, each class in order, background ones within their share, and a
// taker asking for more than there is gets all of it.
func TestLimiterWeighted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLimiter(100, 50)
		took := func(bg bool, n int64) chan int64 {
			ch := make(chan int64, 1)
			go func() {
				got, err := l.acquireN(t.Context(), bg, n)
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
		if n, ok := ready(took(true, 80)); !ok || n != 50 {
			t.Fatalf("background acquireN(80) = %d, %v; want 50 at once (clamped)", n, ok)
		}
		bg2 := took(true, 10) // background is full
		if _, ok := ready(bg2); ok {
			t.Fatal("background went past its share")
		}
		if n, ok := ready(took(false, 40)); !ok || n != 40 {
			t.Fatalf("on-demand acquireN(40) = %d, %v; want 40 at once", n, ok)
		}
		big := took(false, 500) // clamped to 100: waits for everything
		small := took(false, 5) // in order: behind big, though 10 are free
		if _, ok := ready(big); ok {
			t.Fatal("on-demand acquireN(500) did not wait")
		}
		if _, ok := ready(small); ok {
			t.Fatal("a small taker passed a large one")
		}
		l.release(true, 50)
		synctest.Wait()
		if _, ok := ready(bg2); ok {
			t.Fatal("background served while on-demand takers wait")
		}
		l.release(false, 40)
		synctest.Wait()
		if n, ok := ready(big); !ok || n != 100 {
			t.Fatalf("acquireN(500) = %d, %v after all was released; want 100", n, ok)
		}
		l.release(false, 100)
		synctest.Wait()
		if _, ok := ready(small); !ok {
			t.Fatal("small taker not served")
		}
		if _, ok := ready(bg2); !ok {
			t.Fatal("background taker not served once on-demand ones were")
		}
		if p := l.peakBusy(); p != 100 {
			t.Errorf("peak %d, want 100", p)
		}
		// A large waiter that gives up lets the smaller ones behind it in.
		l.release(false, 5)
		l.release(true, 10)
		hold, _ := l.acquireN(t.Context(), false, 60)
		ctx, cancel := context.WithCancel(t.Context())
		go func() { l.acquireN(ctx, false, 60) }()
		synctest.Wait()
		after := took(false, 30)
		if _, ok := ready(after); ok {
			t.Fatal("taker passed a waiting one")
		}
		cancel()
		synctest.Wait()
		if _, ok := ready(after); !ok {
			t.Fatal("taker still waits after the one ahead gave up")
		}
		l.release(false, hold+30)
		if l.busy != 0 || l.bgBusy != 0 {
			t.Errorf("busy %d, %d after every release", l.busy, l.bgBusy)
		}
	})
}
