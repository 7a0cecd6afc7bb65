// SPDX-License-Identifier: Apache-2.0

// Command stargz-store serves eStargz image layers lazily to Podman and
// CRI-O as a FUSE additional layer store, and converts images to eStargz.
//
//	stargz-store [flags] MOUNTPOINT          serve (until SIGINT or SIGTERM)
//	stargz-store convert [flags] SRC DST     convert an image to eStargz
//	stargz-store optimize [flags] SRC DST [-- CMD...]  convert, prefetching what CMD reads
//	stargz-store version
//
// main only picks the exit code: everything else returns errors to it, so
// deferred unmounts always run.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "stargz-store:", err)
		os.Exit(1)
	}
}

// run dispatches to a subcommand; serving is the default.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "convert":
			return runConvert(ctx, args[1:], stdout, stderr)
		case "optimize":
			return runOptimize(ctx, args[1:], stdout, stderr)
		case "version":
			_, err := fmt.Fprintln(stdout, "stargz-store", version)
			return err
		}
	}
	return runServe(ctx, args, stderr)
}
