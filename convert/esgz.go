// SPDX-License-Identifier: Apache-2.0

package convert

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/stargz-store/stargz-store/store/estargz"
)

// buildLayer writes the tar in tarFile[0:tarSize] to w as an eStargz blob. Only the prioritized
// files present in this layer are passed on, since estargz.Build refuses names missing from the
// tar and an image's prioritized files are spread over its layers. With Options.ExternalTOC the
// TOC blob is returned instead of being embedded (nil otherwise); with Options.KeepDiffID the
// blob gunzips to exactly the input tar.
func (c *converter) buildLayer(ctx context.Context, w io.Writer, tarFile io.ReaderAt, tarSize int64) (estargz.BuildResult, []byte, error) {
	prioritized, err := presentFiles(tarFile, tarSize, c.opts.PrioritizedFiles)
	if err != nil {
		return estargz.BuildResult{}, nil, fmt.Errorf("scan tar: %w", err)
	}
	bo := estargz.BuildOptions{
		ChunkSize:        c.opts.ChunkSize,
		MinChunkSize:     c.opts.MinChunkSize,
		PrioritizedFiles: prioritized,
	}
	if c.opts.ExternalTOC {
		res, err := estargz.BuildExternal(ctx, w, tarFile, tarSize, estargz.ExternalBuildOptions{BuildOptions: bo, Lossless: c.opts.KeepDiffID})
		if err != nil {
			return estargz.BuildResult{}, nil, fmt.Errorf("build estargz: %w", err)
		}
		return res.BuildResult, res.TOC, nil
	}
	res, err := estargz.Build(ctx, w, tarFile, tarSize, bo)
	if err != nil {
		return estargz.BuildResult{}, nil, fmt.Errorf("build estargz: %w", err)
	}
	return res, nil, nil
}

// presentFiles returns the names of want that occur in the tar, in the order of want. Names are
// compared the way estargz.Build compares them: relative to the root, cleaned ("./a//b" is "a/b").
func presentFiles(tarFile io.ReaderAt, tarSize int64, want []string) ([]string, error) {
	if len(want) == 0 {
		return nil, nil
	}
	in := make(map[string]bool)
	// A SectionReader seeks, so tar.Reader skips payloads instead of reading them.
	tr := tar.NewReader(io.NewSectionReader(tarFile, 0, tarSize))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		in[cleanName(h.Name)] = true
	}
	var out []string
	for _, name := range want {
		if in[cleanName(name)] {
			out = append(out, name)
		}
	}
	return out, nil
}

func cleanName(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}
