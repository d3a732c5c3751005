// Package exhibit builds the evidence package Vigil releases to the police
// for one exhibit, and verifies such a package offline.
//
// The package is meant to survive a defence expert: it can be checked with
// no network, with no trust in the gateway's administrators, and, apart from
// the signature, with nothing but sha256sum. It is a BagIt 1.0 bag (RFC 8493,
// package bagit) in a zip, with one top-level directory named
// "vigil-<release request id>":
//
//	bagit.txt                        BagIt declaration
//	data/<camera>/<clip>             the original clips, byte for byte, named by their clip ids
//	proofs/<camera>/<clip>.json      the clip's ledger entry body and its inclusion proof
//	continuity/<camera>/<clip>.txt   every continuity step from capture to this export, readable
//	checkpoint.txt                   the signed checkpoint (C2SP signed note) the proofs lead to
//	gateway.pub                      the gateway's note verifier key
//	section9-statement-draft.txt     a DRAFT s.9 witness statement for the producing witness
//	README.txt                       how to check the package, with and without vigil-verify
//	bag-info.txt                     exhibit and release metadata, Payload-Oxum
//	manifest-sha256.txt              SHA-256 of every clip ("<hex>  <path>", sha256sum -c format)
//	manifest-sha512.txt              SHA-512 of every clip
//	tagmanifest-sha256.txt           SHA-256 of every file above except data/
//	tagmanifest-sha256.txt.sig       the gateway's signature over the tag manifest
//
// # What binds what
//
// The clip bytes are bound to the manifests, the manifests and every other
// tag file to tagmanifest-sha256.txt, and that to the gateway key by
// tagmanifest-sha256.txt.sig, a signed note (golang.org/x/mod/sumdb/note)
// whose text is exactly
//
//	vigil-exhibit/v1 tag manifest
//	bag <bag name>
//	<SHA-256 of tagmanifest-sha256.txt>  tagmanifest-sha256.txt
//
// The last line is what `sha256sum tagmanifest-sha256.txt` prints, so the
// binding can be seen without any Vigil tool. The .sig cannot be listed in
// the tag manifest it signs: its bytes depend on the tag manifest's digest,
// so listing it would make the tag manifest depend on itself. It is the one
// tag file outside the tag manifest; Verify treats any other unlisted file as
// a problem. The first line of the signed text keeps a tag-manifest signature
// from being mistaken for a checkpoint signed by the same key (a checkpoint's
// second line is a tree size).
//
// Independently of the package's own signature, each clip is bound to the
// gateway's evidence ledger: its proof file carries the canonical entry body
// (camera, clip id, wearer, site, times, size, SHA-256, time received, how
// it was received, and the hash of the camera's previous entry) and an RFC
// 6962 inclusion proof from that body to the root signed in checkpoint.txt.
// The same checkpoint is kept under compliance lock in the Trust's object
// store and may have been sent elsewhere, so the proof shows the clip was in
// the ledger when the checkpoint was signed, not made up at export.
//
// # Other people
//
// An inclusion proof carries the digests of neighbouring subtrees, and the
// checkpoint carries only the log's size and root: nothing in the package
// names another wearer, another camera's clip or its metadata. The prev
// field of an entry body is a digest too.
//
// # Trusting the key
//
// gateway.pub travels inside the package, so on its own it proves only that
// the package is internally consistent: whoever made a forged package could
// embed their own key. Verify with Options.PubKey set to the key obtained
// independently (from the Trust's information-governance office, `vigil
// evidence pubkey` output sent separately, or a published copy) checks that
// the embedded key is that key and that both signatures verify with it; a
// report without PubKey says the key was not independently checked.
//
// # Continuity and the statement
//
// Build adds a final "exported" step to each clip's continuity from the
// release request and approval. The section 9 statement is a draft produced
// from the records: a person (the producing witness) must check every fact,
// complete it and sign it; Vigil never signs it.
package exhibit
