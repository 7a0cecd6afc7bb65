// SPDX-License-Identifier: Apache-2.0

//go:build race

package estargz

// rdRace reports a race-detector build, in which sync.Pool drops items
// at random and allocation counts mean nothing.
const rdRace = true
