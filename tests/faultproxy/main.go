// SPDX-License-Identifier: Apache-2.0

// Command faultproxy runs internal/faultproxy in front of a registry for
// the end-to-end tests (tests/bats/90-registry-faults.bats): a proxy
// address that a store and Podman pull from, and a control address that
// the tests switch faults and cuts with (see faultproxy.ControlHandler):
//
//	faultproxy -backend http://127.0.0.1:5000 -listen 127.0.0.1:0 -control 127.0.0.1:0 -addr-file F
//
// Once both listen it writes "<proxy host:port> <control host:port>\n" to
// F. It logs what it injects to stderr and stops on SIGINT or SIGTERM. It
// is a test tool, not part of the product.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/stargz-store/stargz-store/internal/faultproxy"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "faultproxy:", err)
		os.Exit(1)
	}
}

func run() error {
	backend := flag.String("backend", "", "registry base URL, e.g. http://127.0.0.1:5000")
	listen := flag.String("listen", "127.0.0.1:0", "proxy address")
	control := flag.String("control", "127.0.0.1:0", "control API address")
	addrFile := flag.String("addr-file", "", "file to write \"<proxy> <control>\" to once listening")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p, err := faultproxy.Start(faultproxy.Options{Addr: *listen, Backend: *backend, Logger: log})
	if err != nil {
		return err
	}
	defer p.Close()
	ln, err := net.Listen("tcp", *control)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: p.ControlHandler()}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	defer srv.Close()
	if *addrFile != "" {
		if err := os.WriteFile(*addrFile, fmt.Appendf(nil, "%s %s\n", p.Addr(), ln.Addr()), 0o644); err != nil {
			return err
		}
	}
	log.Info("serving", "proxy", p.Addr(), "control", ln.Addr().String(), "backend", *backend)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	}
}
