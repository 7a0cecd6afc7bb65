// SPDX-License-Identifier: Apache-2.0

//go:build projectesgz

package convert

import (
	"context"
	"io"

	"github.com/stargz-store/stargz-store/store/estargz"
)

type (
	buildOptions = estargz.BuildOptions
	buildResult  = estargz.BuildResult
)

// buildESGZ writes tar (tarSize bytes) to w as an eStargz blob.
func buildESGZ(ctx context.Context, w io.Writer, tar io.ReaderAt, tarSize int64, opts buildOptions) (buildResult, error) {
	return estargz.Build(ctx, w, tar, tarSize, opts)
}
