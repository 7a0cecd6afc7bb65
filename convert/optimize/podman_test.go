// SPDX-License-Identifier: Apache-2.0

package optimize

import (
	"regexp"
	"strings"
	"testing"
)

func TestScanOutput(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		re    string
		match bool
	}{
		{"match on a later line", "starting\nServing on :8080\nmore\n", `^Serving`, true},
		{"last line without newline", "a\nready", `^ready$`, true},
		{"no match", "a\nb\n", `ready`, false},
		{"no regexp", "a\n", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var re *regexp.Regexp
			if tt.re != "" {
				re = regexp.MustCompile(tt.re)
			}
			var out strings.Builder
			matched := make(chan struct{})
			scanOutput(strings.NewReader(tt.in), &out, re, matched)
			got := false
			select {
			case <-matched:
				got = true
			default:
			}
			if got != tt.match {
				t.Errorf("matched = %v, want %v", got, tt.match)
			}
			if out.String() != tt.in {
				t.Errorf("output = %q, want %q", out.String(), tt.in)
			}
		})
	}
}
