// SPDX-License-Identifier: Apache-2.0

package main

import (
	"io"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseOptimizeFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		check   func(optimizeFlags) bool
		wantErr string
	}{
		{
			name: "defaults, image command",
			args: []string{"a:1", "b:1"},
			check: func(f optimizeFlags) bool {
				return f.src == "a:1" && f.dst == "b:1" && f.cmd == nil && f.period == 10*time.Second &&
					f.waitFor == nil && f.podman == "podman" && f.workDir == "/var/tmp" && !f.plainHTTP
			},
		},
		{
			name: "command after --, flags before",
			args: []string{"--plain-http", "--period", "3s", "--wait-for-output", "^ready", "a", "b", "--", "python3", "-c", "print(1)"},
			check: func(f optimizeFlags) bool {
				return f.plainHTTP && f.period == 3*time.Second && f.waitFor.MatchString("ready now") &&
					slices.Equal(f.cmd, []string{"python3", "-c", "print(1)"})
			},
		},
		{
			name:  "empty command after --",
			args:  []string{"a", "b", "--"},
			check: func(f optimizeFlags) bool { return f.cmd == nil },
		},
		{name: "command without --", args: []string{"a", "b", "python3"}, wantErr: "want SRC DST [-- CMD"},
		{name: "no DST", args: []string{"a"}, wantErr: "want SRC DST"},
		{name: "bad regexp", args: []string{"--wait-for-output", "(", "a", "b"}, wantErr: "--wait-for-output"},
		{name: "zero period", args: []string{"--period", "0s", "a", "b"}, wantErr: "--period must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := parseOptimizeFlags(tt.args, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseOptimizeFlags(%q) error = %v, want one containing %q", tt.args, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseOptimizeFlags(%q) error = %v", tt.args, err)
			}
			if !tt.check(f) {
				t.Fatalf("parseOptimizeFlags(%q) = %+v", tt.args, f)
			}
		})
	}
}
