// SPDX-License-Identifier: Apache-2.0

package store

import (
	"testing"
	"testing/synctest"
	"time"
)

// TestBackgroundWaitsForQuietLayer: the background fetch sends nothing
// until the layer has gone BackgroundDelay without a file read fetching.
func TestBackgroundWaitsForQuietLayer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, blob := openGated(t, sampleFiles(t, "quiet"), -1)
		blob.reset()
		close(blob.gate)
		reads := blob.readCount
		l.startFetching(fetchOptions{background: true, delay: 2 * time.Second, batch: 8192})
		synctest.Wait()
		if n := reads(); n != 0 {
			t.Fatalf("%d requests right after opening, want 0 (background waits 2s)", n)
		}
		time.Sleep(time.Second) // virtual time: the bubble's clock
		readFile(t, l, "etc/hostname")
		synctest.Wait()
		if n := reads(); n != 1 {
			t.Fatalf("%d requests after one read, want 1", n)
		}
		time.Sleep(1500 * time.Millisecond) // 2.5s after opening, 1.5s after the read
		synctest.Wait()
		if n := reads(); n != 1 {
			t.Fatalf("%d requests 1.5s after a read, want 1 (background waits 2s)", n)
		}
		time.Sleep(time.Second)
		<-l.pre.fetched
		if n := reads(); n < 2 {
			t.Fatalf("%d requests after the quiet period, want the background's too", n)
		}
	})
}
