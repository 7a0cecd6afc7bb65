// SPDX-License-Identifier: Apache-2.0

package podmanconf

import (
	"os/exec"
	"strings"
	"testing"
)

// script is the shell twin of this package, relative to this directory.
const script = "../../scripts/podman-conf.bash"

// bash runs a function of the shell twin with args and returns what it printed.
func bash(t *testing.T, fn string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("bash", append([]string{"-c", `source "$0" && "$@"`, script, fn}, args...)...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bash %s %q: %v", fn, args, err)
	}
	return out
}

func TestShellTwinWritesTheSameFiles(t *testing.T) {
	tests := []struct {
		name string
		fn   string
		args []string
		want []byte
	}{
		{"containers.conf", "podman_containers_conf", []string{"/run/x/libpod"}, ContainersConf("/run/x/libpod")},
		{"storage.conf with a store", "podman_storage_conf", []string{"/var/g", "/run/x/storage", "/mnt/als"},
			StorageConf("/var/g", "/run/x/storage", "/mnt/als")},
		{"storage.conf without a store", "podman_storage_conf", []string{"/var/g", "/run/x/storage"},
			StorageConf("/var/g", "/run/x/storage", "")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := bash(t, tt.fn, tt.args...); string(got) != string(tt.want) {
				t.Errorf("%s %q printed\n%s\nwant (the Go twin's)\n%s", tt.fn, tt.args, got, tt.want)
			}
		})
	}
}

func TestContainersConf(t *testing.T) {
	got := string(ContainersConf("/run/a b/libpod"))
	for _, want := range []string{`runtime = "runc"`, `lock_type = "file"`, `tmp_dir = "/run/a b/libpod"`, "[containers]\n", "[engine]\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("ContainersConf lacks %q:\n%s", want, got)
		}
	}
}

func TestStorageConf(t *testing.T) {
	tests := []struct {
		name            string
		graph, run, als string
		want            string
	}{
		{"no store", "/g", "/r", "",
			"[storage]\ndriver = \"overlay\"\ngraphroot = \"/g\"\nrunroot = \"/r\"\n"},
		{"store", "/g", "/r", "/mnt",
			"[storage]\ndriver = \"overlay\"\ngraphroot = \"/g\"\nrunroot = \"/r\"\n[storage.options]\nadditionallayerstores = [\"/mnt:ref\"]\n"},
		{"quote and backslash escaped", `/g"x`, `/r\y`, "",
			"[storage]\ndriver = \"overlay\"\ngraphroot = \"/g\\\"x\"\nrunroot = \"/r\\\\y\"\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(StorageConf(tt.graph, tt.run, tt.als)); got != tt.want {
				t.Errorf("StorageConf(%q, %q, %q) =\n%s\nwant\n%s", tt.graph, tt.run, tt.als, got, tt.want)
			}
		})
	}
}
