//go:build tools

// Package deps pins the modules the packages are about to import, so that
// parallel work does not race on go.mod. It is deleted once real imports exist.
package deps

import (
	_ "github.com/BurntSushi/toml"
	_ "github.com/containerd/stargz-snapshotter/estargz"
	_ "github.com/coreos/go-systemd/v22/daemon"
	_ "github.com/golang/groupcache/lru"
	_ "github.com/google/go-containerregistry/pkg/registry"
	_ "github.com/hanwen/go-fuse/v2/fs"
	_ "github.com/hanwen/go-fuse/v2/fuse"
	_ "github.com/klauspost/compress/gzip"
	_ "github.com/klauspost/compress/zstd"
	_ "github.com/opencontainers/go-digest"
	_ "github.com/opencontainers/image-spec/specs-go/v1"
	_ "go.podman.io/image/v5/docker"
	_ "go.podman.io/image/v5/docker/reference"
	_ "go.podman.io/image/v5/image"
	_ "go.podman.io/image/v5/manifest"
	_ "go.podman.io/image/v5/oci/layout"
	_ "go.podman.io/image/v5/oci/archive"
	_ "go.podman.io/image/v5/pkg/blobinfocache/none"
	_ "go.podman.io/image/v5/pkg/docker/config"
	_ "go.podman.io/image/v5/pkg/sysregistriesv2"
	_ "go.podman.io/image/v5/pkg/tlsclientconfig"
	_ "go.podman.io/image/v5/types"
	_ "go.podman.io/storage/pkg/chunked/toc"
	_ "go.podman.io/storage/pkg/archive"
	_ "golang.org/x/sync/errgroup"
	_ "golang.org/x/sync/singleflight"
	_ "golang.org/x/sys/unix"
)
