// SPDX-License-Identifier: Apache-2.0

package optimize

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/types"
)

// maxManifestSize bounds the manifest read from the scratch registry, as
// containers/image bounds manifests (4 MiB).
const maxManifestSize = 4 << 20

// ScratchRegistry is a private registry on 127.0.0.1 (plain HTTP, no
// authentication, blobs on disk) that `stargz-store optimize` pushes the
// unoptimized eStargz image to, so that the recording store and Podman
// can pull it. Its methods are safe for concurrent use.
type ScratchRegistry struct {
	dir  string
	addr string
	srv  *http.Server
	done chan struct{} // closed when Serve returned
}

// StartScratchRegistry serves a registry whose blobs live under dir
// (which must exist) on 127.0.0.1 at a free port, until Close.
func StartScratchRegistry(ctx context.Context, dir string) (*ScratchRegistry, error) {
	blobs := filepath.Join(dir, "blobs")
	if err := os.MkdirAll(blobs, 0o700); err != nil {
		return nil, fmt.Errorf("scratch registry: %w", err)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("scratch registry: %w", err)
	}
	h := registry.New(registry.WithBlobHandler(registry.NewDiskBlobHandler(blobs)),
		registry.Logger(log.New(io.Discard, "", 0)))
	r := &ScratchRegistry{dir: dir, addr: ln.Addr().String(), done: make(chan struct{}),
		srv: &http.Server{Handler: h, ReadHeaderTimeout: time.Minute}}
	go func() {
		defer close(r.done)
		_ = r.srv.Serve(ln) // ErrServerClosed after Close
	}()
	return r, nil
}

// Addr returns the registry's host:port.
func (r *ScratchRegistry) Addr() string { return r.addr }

// Ref returns a reference to repository repo with tag in the registry.
func (r *ScratchRegistry) Ref(repo, tag string) string { return r.addr + "/" + repo + ":" + tag }

// RegistriesConf writes a registries.conf that names only this registry,
// as insecure (plain HTTP), and returns its path. The recording store and
// Podman use it.
func (r *ScratchRegistry) RegistriesConf() (string, error) {
	p := filepath.Join(r.dir, "registries.conf")
	if err := os.WriteFile(p, []byte(r.confEntry()), 0o600); err != nil {
		return "", fmt.Errorf("scratch registry: %w", err)
	}
	return p, nil
}

func (r *ScratchRegistry) confEntry() string {
	return fmt.Sprintf("[[registry]]\nlocation = %q\ninsecure = true\n", r.addr)
}

// SystemContext returns a copy of base that also reaches this registry
// over plain HTTP, without turning TLS verification off for any other
// registry. It adds a registries.conf drop-in naming this registry as
// insecure: SystemRegistriesConfDirPath points at a directory holding it
// and links to the drop-ins base would have read. When base names no
// registries.conf and CONTAINERS_REGISTRIES_CONF does, that file becomes
// SystemRegistriesConfPath, because containers/image reads no drop-ins
// for a file named by the environment.
func (r *ScratchRegistry) SystemContext(base *types.SystemContext) (*types.SystemContext, error) {
	var sys types.SystemContext
	if base != nil {
		sys = *base
	}
	drop := filepath.Join(r.dir, "registries.conf.d")
	if err := os.MkdirAll(drop, 0o700); err != nil {
		return nil, fmt.Errorf("scratch registry: %w", err)
	}
	var srcDirs []string
	switch env := os.Getenv("CONTAINERS_REGISTRIES_CONF"); {
	case sys.SystemRegistriesConfPath == "" && env != "":
		sys.SystemRegistriesConfPath = env
	case sys.SystemRegistriesConfDirPath != "":
		srcDirs = []string{sys.SystemRegistriesConfDirPath}
	default: // containers/image's search order, later ones override
		srcDirs = []string{"/usr/share/containers/registries.conf.d", "/etc/containers/registries.conf.d"}
		if home, err := os.UserHomeDir(); err == nil {
			srcDirs = append(srcDirs, filepath.Join(home, ".config/containers/registries.conf.d"))
		}
	}
	for _, d := range srcDirs {
		ents, err := os.ReadDir(d)
		if errors.Is(err, os.ErrNotExist) {
			continue
		} else if err != nil {
			return nil, fmt.Errorf("scratch registry: %w", err)
		}
		for _, e := range ents {
			if e.IsDir() || !strings.HasSuffix(e.Name(), ".conf") {
				continue
			}
			// Later directories override earlier ones, as the user's does.
			link := filepath.Join(drop, e.Name())
			_ = os.Remove(link)
			if err := os.Symlink(filepath.Join(d, e.Name()), link); err != nil {
				return nil, fmt.Errorf("scratch registry: %w", err)
			}
		}
	}
	// Read last: drop-ins are applied in name order.
	if err := os.WriteFile(filepath.Join(drop, "zzzz-stargz-optimize.conf"), []byte(r.confEntry()), 0o600); err != nil {
		return nil, fmt.Errorf("scratch registry: %w", err)
	}
	sys.SystemRegistriesConfDirPath = drop
	return &sys, nil
}

// LayerDigests returns the layer digests of the OCI or Docker schema 2
// image repo:tag in this registry, bottom layer first.
func (r *ScratchRegistry) LayerDigests(ctx context.Context, repo, tag string) ([]digest.Digest, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.addr+"/v2/"+repo+"/manifests/"+tag, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", ocispec.MediaTypeImageManifest+", "+manifest.DockerV2Schema2MediaType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scratch registry manifest: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scratch registry manifest %s:%s: %s", repo, tag, resp.Status)
	}
	var m ocispec.Manifest
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxManifestSize)).Decode(&m); err != nil {
		return nil, fmt.Errorf("scratch registry manifest: %w", err)
	}
	out := make([]digest.Digest, len(m.Layers))
	for i, l := range m.Layers {
		out[i] = l.Digest
	}
	return out, nil
}

// Close stops serving and waits for the server's goroutine. It does not
// remove the blobs; the caller owns dir.
func (r *ScratchRegistry) Close() error {
	err := r.srv.Close()
	<-r.done
	return err
}
