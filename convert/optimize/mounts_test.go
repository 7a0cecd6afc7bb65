// SPDX-License-Identifier: Apache-2.0

package optimize

import "testing"

func TestUnescapeMountinfo(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/a/b", "/a/b"},
		{`/a\040b`, "/a b"},
		{`/a\011b\134`, "/a\tb\\"},
		{`/a\09`, `/a\09`},
		{`/a\`, `/a\`},
	}
	for _, tt := range tests {
		if got := unescapeMountinfo(tt.in); got != tt.want {
			t.Errorf("unescapeMountinfo(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestMountsBelowNothingMounted(t *testing.T) {
	got, err := MountsBelow(t.TempDir())
	if err != nil || len(got) != 0 {
		t.Errorf("MountsBelow(fresh dir) = %v, %v; want none", got, err)
	}
}
