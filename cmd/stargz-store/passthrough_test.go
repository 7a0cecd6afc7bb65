// SPDX-License-Identifier: Apache-2.0

package main

import (
	"strings"
	"testing"
)

func TestPassthroughWhy(t *testing.T) {
	root := "Name:\tstargz-store\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n"
	noAdmin := "CapEff:\t00000000a80425fb\n"
	initNS := "         0          0 4294967295\n"
	for _, tc := range []struct {
		name, release, status, uidMap, want string
	}{
		{"root on 6.18", "6.18.3+deb13-amd64", root, initNS, ""},
		{"root on 6.9", "6.9.0", root, initNS, ""},
		{"old kernel", "6.1.0-28-amd64", root, initNS, "older than 6.9"},
		{"older major", "5.19.1", root, initNS, "older than 6.9"},
		{"newer major", "7.0.0", root, initNS, ""},
		{"garbage release", "linux", root, initNS, "older than 6.9"},
		{"no CAP_SYS_ADMIN", "6.18.0", noAdmin, initNS, "CAP_SYS_ADMIN"},
		{"no CapEff line", "6.18.0", "Name:\tx\n", initNS, "CAP_SYS_ADMIN"},
		{"rootless", "6.18.0", root, "         0       1000          1\n         1     100000      65536\n", "user namespace"},
	} {
		got := passthroughWhy(tc.release, tc.status, tc.uidMap)
		if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
			t.Errorf("%s: passthroughWhy() = %q, want %q", tc.name, got, tc.want)
		}
	}
}
