// SPDX-License-Identifier: Apache-2.0

package optimize

import (
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.podman.io/image/v5/types"
)

func TestScratchRegistry(t *testing.T) {
	dir := t.TempDir()
	r, err := StartScratchRegistry(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := r.Close(); err != nil {
			t.Error(err)
		}
	}()
	resp, err := http.Get("http://" + r.Addr() + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /v2/ = %s", resp.Status)
	}
	if got, want := r.Ref("a/b", "t"), r.Addr()+"/a/b:t"; got != want {
		t.Errorf("Ref() = %q, want %q", got, want)
	}
	conf, err := r.RegistriesConf()
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(conf); !strings.Contains(string(b), `location = "`+r.Addr()+`"`) || !strings.Contains(string(b), "insecure = true") {
		t.Errorf("registries.conf = %q", b)
	}

	// The drop-ins of the base directory stay, ours comes last.
	t.Setenv("CONTAINERS_REGISTRIES_CONF", "")
	base := t.TempDir()
	if err := os.WriteFile(filepath.Join(base, "10-mirrors.conf"), []byte("# mirrors\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	orig := &types.SystemContext{SystemRegistriesConfDirPath: base, DockerCertPath: "/certs"}
	sys, err := r.SystemContext(orig)
	if err != nil {
		t.Fatal(err)
	}
	if orig.SystemRegistriesConfDirPath != base || sys.DockerCertPath != "/certs" {
		t.Errorf("SystemContext modified its base or lost fields: %+v", sys)
	}
	ents, err := os.ReadDir(sys.SystemRegistriesConfDirPath)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if want := []string{"10-mirrors.conf", "zzzz-stargz-optimize.conf"}; !slices.Equal(names, want) {
		t.Errorf("drop-ins = %q, want %q", names, want)
	}
	if sys.DockerInsecureSkipTLSVerify == types.OptionalBoolTrue {
		t.Error("SystemContext turned TLS verification off for every registry")
	}

	// A registries.conf named by the environment is read without
	// drop-ins unless named in the SystemContext.
	t.Setenv("CONTAINERS_REGISTRIES_CONF", "/env/registries.conf")
	sys, err = r.SystemContext(nil)
	if err != nil {
		t.Fatal(err)
	}
	if sys.SystemRegistriesConfPath != "/env/registries.conf" || sys.SystemRegistriesConfDirPath == "" {
		t.Errorf("SystemContext(nil) with CONTAINERS_REGISTRIES_CONF = %+v", sys)
	}
}
