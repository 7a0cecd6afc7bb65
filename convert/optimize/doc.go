// SPDX-License-Identifier: Apache-2.0

// Package optimize runs the processes `stargz-store optimize` needs to
// record a workload, so that package convert stays about images: a scratch
// registry on 127.0.0.1 that serves the unoptimized image ([ScratchRegistry]),
// and a throw-away Podman instance that runs the workload from the
// recording store ([RunWorkload]), with its own configuration (package
// internal/podmanconf), graph root and run root, removed afterwards with
// whatever it left mounted ([MountsBelow]).
//
// What the recording yields is turned into the prioritized-file list by
// convert.PrioritizeFiles; the recording store itself is a FUSE mount and
// is wired in cmd/stargz-store.
package optimize
