// SPDX-License-Identifier: Apache-2.0

package testutil

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

// modulePrefix marks the functions of this module in a goroutine dump.
const modulePrefix = "github.com/stargz-store/stargz-store/"

// CheckLeaks fails the test if, at cleanup, a goroutine is still running
// code of this module (other than tests and this package). Call it first
// in a test so that its cleanup runs last, after the Close calls the test
// registered. It waits briefly for goroutines that are just returning.
// It sees every goroutine of the test binary, so it cannot tell apart
// tests running in parallel: use it in tests that do not call t.Parallel.
func CheckLeaks(t testing.TB) {
	t.Helper()
	t.Cleanup(func() {
		var leaked []string
		for deadline := time.Now().Add(2 * time.Second); ; {
			if leaked = moduleGoroutines(); len(leaked) == 0 {
				return
			}
			if time.Now().After(deadline) {
				break
			}
			time.Sleep(10 * time.Millisecond) // goroutines that are returning
		}
		t.Errorf("%d goroutines leaked:\n%s", len(leaked), strings.Join(leaked, "\n\n"))
	})
}

// moduleGoroutines returns the stacks of goroutines running module code.
func moduleGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if !strings.Contains(g, modulePrefix) || strings.Contains(g, "testing.tRunner") ||
			strings.Contains(g, modulePrefix+"internal/testutil.") {
			continue
		}
		out = append(out, g)
	}
	return out
}
