// SPDX-License-Identifier: Apache-2.0

package store

import (
	"fmt"
	"testing"
)

// FuzzCheckContentRange: a registry's Content-Range header is untrusted;
// only the exact range asked for is accepted, and nothing panics.
func FuzzCheckContentRange(f *testing.F) {
	for _, s := range []string{"bytes 10-19/100", "bytes 10-19/*", "bytes -1-19/1", "bytes 10-19", "", "bytes 9223372036854775807-0/1"} {
		f.Add(s, int64(10), int64(19))
	}
	f.Fuzz(func(t *testing.T, h string, first, last int64) {
		if err := checkContentRange(h, first, last); err == nil {
			want := fmt.Sprintf("bytes %d-%d/", first, last)
			if len(h) < len(want) || h[:len(want)] != want {
				t.Errorf("checkContentRange(%q, %d, %d) accepted a different range", h, first, last)
			}
		}
	})
}
