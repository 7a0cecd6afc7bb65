// SPDX-License-Identifier: Apache-2.0

// Command stargz-bench benchmarks lazy pulling through stargz-store against
// a plain `podman pull` + `podman run`, over an emulated WAN link.
package main

func main() {}
