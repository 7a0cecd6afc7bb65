// SPDX-License-Identifier: Apache-2.0

package systemd

import (
	"net"
	"path/filepath"
	"testing"
)

func TestReadyWithoutSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	sent, err := Ready()
	if sent || err != nil {
		t.Fatalf("Ready() = %v, %v; want false, nil", sent, err)
	}
}

func TestReadySendsState(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	for _, tt := range []struct {
		name string
		fn   func() (bool, error)
		want string
	}{
		{"ready", Ready, "READY=1"},
		{"stopping", Stopping, "STOPPING=1"},
		{"status", func() (bool, error) { return Status("serving") }, "STATUS=serving"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sent, err := tt.fn()
			if !sent || err != nil {
				t.Fatalf("%s() = %v, %v; want true, nil", tt.name, sent, err)
			}
			buf := make([]byte, 64)
			n, err := conn.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			if got := string(buf[:n]); got != tt.want {
				t.Fatalf("%s() sent %q, want %q", tt.name, got, tt.want)
			}
		})
	}
}
