// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/stargz-store/stargz-store/convert"
	"github.com/stargz-store/stargz-store/registryauth"
)

// runConvert copies an image to DST with every layer as eStargz and prints
// the new manifest digest last, like skopeo.
func runConvert(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("stargz-store convert", flag.ContinueOnError)
	fs.SetOutput(stderr)
	plainHTTP := fs.Bool("plain-http", false, "allow plain HTTP and unverified TLS for both registries")
	chunkSize := fs.Int("chunk-size", 4<<20, "split files into chunks of this many bytes")
	minChunkSize := fs.Int("min-chunk-size", 0, "pack files smaller than this into shared gzip members (0: off)")
	authFile := fs.String("authfile", "", "auth.json with registry credentials (default: Podman's search order)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: stargz-store convert [flags] SRC DST")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return fmt.Errorf("convert: want SRC and DST, got %d arguments", fs.NArg())
	}
	level, err := parseLevel(*logLevel)
	if err != nil {
		return err
	}
	log := newLogger(stderr, level)
	regs, err := registryauth.New(registryauth.Options{AuthFile: *authFile, Logger: log})
	if err != nil {
		return fmt.Errorf("registry configuration: %w", err)
	}
	defer regs.Close()
	d, err := convert.Image(ctx, fs.Arg(0), fs.Arg(1), convert.Options{
		SystemContext: regs.SystemContext(),
		PlainHTTP:     *plainHTTP,
		ChunkSize:     *chunkSize,
		MinChunkSize:  *minChunkSize,
		Logger:        log,
		Progress:      stderr,
	})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, d)
	return err
}
