// SPDX-License-Identifier: Apache-2.0

package convert

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/oci/archive"
	"go.podman.io/image/v5/oci/layout"
	"go.podman.io/image/v5/transports"
	"go.podman.io/image/v5/types"
)

// Transport prefixes Image understands. containers-storage is reached through Podman (see
// storageTransfer), because the containers/image storage transport needs the containers/storage
// root package, which this module does not build against.
const (
	dockerPrefix     = "docker://"
	ociPrefix        = "oci:"
	ociArchivePrefix = "oci-archive:"
	storagePrefix    = "containers-storage:"
)

// ParseReference parses an image reference in containers/image transport syntax:
// "docker://host/repo:tag", "oci:DIR[:TAG]" or "oci-archive:FILE[:TAG]"; a reference without a
// transport is a docker reference ("host/repo:tag", short names normalised as Podman does).
// "containers-storage:" references are handled by Image through Podman and are refused here.
func ParseReference(s string) (types.ImageReference, error) {
	switch {
	case strings.HasPrefix(s, ociPrefix):
		return layout.ParseReference(strings.TrimPrefix(s, ociPrefix))
	case strings.HasPrefix(s, ociArchivePrefix):
		return archive.ParseReference(strings.TrimPrefix(s, ociArchivePrefix))
	case strings.HasPrefix(s, storagePrefix):
		return nil, fmt.Errorf("%s references are converted through podman save/load, not parsed: %w", storagePrefix, ErrUnsupported)
	}
	return docker.ParseReference("//" + strings.TrimPrefix(s, dockerPrefix))
}

// refName is how a reference is named in messages and logs: familiar for docker references,
// transport:name otherwise.
func refName(ref types.ImageReference) string {
	if ref.Transport().Name() == docker.Transport.Name() && ref.DockerReference() != nil {
		return reference.FamiliarString(ref.DockerReference())
	}
	return transports.ImageName(ref)
}

// tocImageReference returns the reference of the external-TOC image of dst: its tag with the
// "-esgztoc" suffix, the convention stargz-snapshotter and the store look up.
func tocImageReference(dst types.ImageReference) (types.ImageReference, error) {
	const suffix = "-esgztoc"
	switch dst.Transport().Name() {
	case docker.Transport.Name():
		tagged, ok := dst.DockerReference().(reference.NamedTagged)
		if !ok {
			return nil, errors.New("an external TOC needs a tagged destination")
		}
		named, err := reference.WithTag(reference.TrimNamed(tagged), tagged.Tag()+suffix)
		if err != nil {
			return nil, fmt.Errorf("TOC image tag: %w", err)
		}
		return docker.NewReference(named)
	case layout.Transport.Name():
		dir, tag, _ := strings.Cut(dst.StringWithinTransport(), ":")
		if tag == "" {
			return nil, errors.New("an external TOC needs a tagged oci: destination (oci:DIR:TAG)")
		}
		return layout.NewReference(dir, tag+suffix)
	}
	return nil, fmt.Errorf("an external TOC cannot be stored beside a %s destination, which holds one image: %w",
		dst.Transport().Name(), ErrUnsupported)
}

// podmanRunner runs podman with args; tests replace it.
type podmanRunner func(ctx context.Context, podman string, args ...string) error

func runPodman(ctx context.Context, podman string, args ...string) error {
	cmd := exec.CommandContext(ctx, podman, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", podman, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// storageTransfer rewrites containers-storage: references into temporary oci-archive files:
// the source is exported with `podman save --format oci-archive` before conversion, and the
// destination is written to an archive that `podman load` imports after it. The archives live
// in the temporary directory and are removed by cleanup.
type storageTransfer struct {
	dir    string // temporary directory holding the archives; "" if none
	loadIn string // archive to `podman load` after conversion; "" if none
	run    podmanRunner
	podman string
}

// prepare exports a containers-storage source and returns the references to convert between.
func (s *storageTransfer) prepare(ctx context.Context, tempDir, src, dst string) (string, string, error) {
	if !strings.HasPrefix(src, storagePrefix) && !strings.HasPrefix(dst, storagePrefix) {
		return src, dst, nil
	}
	dir, err := os.MkdirTemp(tempDir, "stargz-convert-storage-*")
	if err != nil {
		return "", "", fmt.Errorf("create temporary directory: %w", err)
	}
	s.dir = dir
	if name, ok := strings.CutPrefix(src, storagePrefix); ok {
		archivePath := filepath.Join(dir, "source.tar")
		if err := s.run(ctx, s.podman, "save", "--format", "oci-archive", "-o", archivePath, name); err != nil {
			return "", "", fmt.Errorf("export %s: %w", src, err)
		}
		src = ociArchivePrefix + archivePath
	}
	if name, ok := strings.CutPrefix(dst, storagePrefix); ok {
		s.loadIn = filepath.Join(dir, "destination.tar")
		dst = ociArchivePrefix + s.loadIn + ":" + name
	}
	return src, dst, nil
}

// finish imports the converted archive into containers-storage.
func (s *storageTransfer) finish(ctx context.Context) error {
	if s.loadIn == "" {
		return nil
	}
	if err := s.run(ctx, s.podman, "load", "-q", "-i", s.loadIn); err != nil {
		return fmt.Errorf("import into containers-storage: %w", err)
	}
	return nil
}

func (s *storageTransfer) cleanup() {
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
}
