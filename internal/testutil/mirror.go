// SPDX-License-Identifier: Apache-2.0

package testutil

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stargz-store/stargz-store/refspec"
	"github.com/stargz-store/stargz-store/registryauth"
)

// Mirrored checks the test for leaks, pushes img as app:v1 to a new
// primary registry, and returns registries that put a new, empty mirror
// before it (registries.conf, both insecure, the primary's auth file),
// the reference app:v1 at the primary, the primary and the mirror.
func Mirrored(t testing.TB, img *Image) (*registryauth.Registries, refspec.Reference, *Registry, *Registry) {
	t.Helper()
	CheckLeaks(t)
	primary, mirror := NewRegistry(t), NewRegistry(t)
	primary.Push(t, "app", "v1", img)
	conf := filepath.Join(t.TempDir(), "registries.conf")
	data := fmt.Sprintf("[[registry]]\nlocation = %q\ninsecure = true\n[[registry.mirror]]\nlocation = %q\ninsecure = true\n", primary.Host, mirror.Host)
	if err := os.WriteFile(conf, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	regs, err := registryauth.New(registryauth.Options{AuthFile: primary.AuthFile(t, "", ""), RegistriesConf: conf,
		RegistriesConfDir: t.TempDir(), CertDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { regs.Close() })
	ref, err := refspec.Parse(primary.Ref("app", "v1"))
	if err != nil {
		t.Fatal(err)
	}
	return regs, ref, primary, mirror
}
