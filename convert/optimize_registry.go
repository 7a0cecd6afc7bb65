// SPDX-License-Identifier: Apache-2.0

package convert

import (
	"context"
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
	"go.podman.io/image/v5/types"
)

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
// registry: it points SystemRegistriesConfDirPath at a directory holding
// links to the drop-ins base would have read plus one naming this
// registry as insecure. (Podman's per-user drop-in directory is read as
// well, as containers/image does when no directory is set.)
func (r *ScratchRegistry) SystemContext(base *types.SystemContext) (*types.SystemContext, error) {
	var sys types.SystemContext
	if base != nil {
		sys = *base
	}
	drop := filepath.Join(r.dir, "registries.conf.d")
	if err := os.MkdirAll(drop, 0o700); err != nil {
		return nil, fmt.Errorf("scratch registry: %w", err)
	}
	srcDirs := []string{sys.SystemRegistriesConfDirPath}
	if srcDirs[0] == "" {
		srcDirs = []string{"/etc/containers/registries.conf.d"}
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

// Close stops serving and waits for the server's goroutine. It does not
// remove the blobs; the caller owns dir.
func (r *ScratchRegistry) Close() error {
	err := r.srv.Close()
	<-r.done
	return err
}
