// SPDX-License-Identifier: Apache-2.0

//go:build !projectesgz

// TEMPORARY: builds with the reference estargz library until store/estargz.Build lands; selected
// unless built with -tags projectesgz (which needs store/estargz).

package convert

import (
	"context"
	"crypto/sha256"
	"io"

	refesgz "github.com/containerd/stargz-snapshotter/estargz"
	digest "github.com/opencontainers/go-digest"
)

type buildOptions struct {
	ChunkSize        int
	MinChunkSize     int
	PrioritizedFiles []string
	CompressionLevel int
}

type buildResult struct {
	Digest           digest.Digest
	Size             int64
	TOCDigest        digest.Digest
	DiffID           digest.Digest
	UncompressedSize int64
}

func buildESGZ(ctx context.Context, w io.Writer, tar io.ReaderAt, tarSize int64, opts buildOptions) (buildResult, error) {
	var missed []string
	o := []refesgz.Option{refesgz.WithContext(ctx), refesgz.WithAllowPrioritizeNotFound(&missed)}
	if opts.ChunkSize > 0 {
		o = append(o, refesgz.WithChunkSize(opts.ChunkSize))
	}
	if opts.MinChunkSize > 0 {
		o = append(o, refesgz.WithMinChunkSize(opts.MinChunkSize))
	}
	if len(opts.PrioritizedFiles) > 0 {
		o = append(o, refesgz.WithPrioritizedFiles(opts.PrioritizedFiles))
	}
	b, err := refesgz.Build(io.NewSectionReader(tar, 0, tarSize), o...)
	if err != nil {
		return buildResult{}, err
	}
	defer b.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), b)
	if err != nil {
		return buildResult{}, err
	}
	usize, err := b.UncompressedSize()
	if err != nil {
		return buildResult{}, err
	}
	return buildResult{
		Digest:           digest.NewDigest(digest.SHA256, h),
		Size:             n,
		TOCDigest:        b.TOCDigest(),
		DiffID:           b.DiffID(),
		UncompressedSize: usize,
	}, nil
}
