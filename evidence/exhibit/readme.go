package exhibit

import (
	"fmt"
	"strings"
)

// readmeText is README.txt: how to check the package, in plain words.
func readmeText(pp *prepared) []byte {
	first := pp.clips[0]
	example := first.dataPath()
	var b strings.Builder
	w := func(s string) { b.WriteString(s) }
	p := func(s string) { b.WriteString(wrap(s, 76) + "\n\n") }

	w(fmt.Sprintf("VIGIL EVIDENCE PACKAGE %s\n\n", pp.bag))
	p(fmt.Sprintf("Exhibit %s, crime reference %s, released to %s (%s). Produced by %s on %s (UTC) under release request %s.",
		pp.ExhibitRef, pp.CrimeRef, pp.Officer, pp.Force, pp.SourceOrganization, fmtTime(pp.Bagged), pp.RequestID))
	p("This package is a BagIt 1.0 bag (RFC 8493). It contains original body-worn camera clips and what is needed " +
		"to check, with no network and without trusting the people who run the gateway, that they are the files the " +
		"gateway received and recorded, and that nothing in the package has changed since it was made.")

	w("WHAT IS IN IT (in the directory " + pp.bag + ")\n\n")
	for _, kv := range [][2]string{
		{"data/<camera>/<clip>", "the original clips, byte for byte, named by their clip ids"},
		{"manifest-sha256.txt", "SHA-256 of every clip"},
		{"manifest-sha512.txt", "SHA-512 of every clip"},
		{"proofs/<camera>/<clip>.json", "each clip's ledger entry and its proof of inclusion in checkpoint.txt"},
		{"checkpoint.txt", "the gateway's signed statement of its evidence ledger (size and root hash)"},
		{"gateway.pub", "the public key of the gateway, which signed checkpoint.txt and the .sig"},
		{"continuity/<camera>/<clip>.txt", "each clip's history from capture to this export"},
		{"section9-statement-draft.txt", "a DRAFT witness statement for the producing witness to check and sign"},
		{"bag-info.txt", "exhibit and release details"},
		{"tagmanifest-sha256.txt", "SHA-256 of every file above except the clips"},
		{"tagmanifest-sha256.txt.sig", "the gateway's signature over tagmanifest-sha256.txt"},
	} {
		w("  " + kv[0] + "\n" + indent(wrap(kv[1], 70), "      ") + "\n")
	}
	w("\n")

	w("THE KEY\n\n")
	p("The signatures mean something only if the key they verify with is the gateway's real key. gateway.pub is " +
		"included for convenience, but whoever forged a package could include their own key. Obtain the gateway's " +
		"key separately from " + pp.SourceOrganization + " (for example from its information governance office) " +
		"and check that it is exactly the line in gateway.pub. The key in this package is:")
	w("  " + pp.PublicKey + "\n\n")

	w("CHECKING WITH vigil-verify\n\n")
	w("  vigil-verify --pubkey \"<the key obtained separately>\" " + pp.bag + ".zip\n\n")
	p("vigil-verify needs no network and no configuration, and runs on Linux, Windows and macOS. It checks " +
		"everything described below, prints each clip, the continuity summary and the checks that passed, and exits " +
		"with status 0 only if everything verifies; otherwise it names each file and check that failed and exits " +
		"with status 1. Without --pubkey it uses gateway.pub and says that the key was not independently checked.")

	w("CHECKING WITHOUT vigil-verify\n\n")
	p("Unzip the package (the zip stores the files uncompressed) and change into the directory " + pp.bag + ".")
	p("1. The clips. On Linux:")
	w("     sha256sum -c manifest-sha256.txt\n     sha512sum -c manifest-sha512.txt\n\n")
	p("On macOS:")
	w("     shasum -a 256 -c manifest-sha256.txt\n     shasum -a 512 -c manifest-sha512.txt\n\n")
	p("Every line must say OK, and every file under data/ must be listed. On Windows, in PowerShell, run for each clip, for example:")
	w("     Get-FileHash -Algorithm SHA256 " + strings.ReplaceAll(example, "/", "\\") + "\n\n")
	p("and compare the hash with the clip's line in manifest-sha256.txt (case does not matter).")
	p("2. The other files. Every file except the clips and tagmanifest-sha256.txt.sig must be listed and say OK:")
	w("     sha256sum -c tagmanifest-sha256.txt\n\n")
	p("3. The signature. tagmanifest-sha256.txt.sig is a signed note: three lines of text, a blank line, and a " +
		"signature line \"— <key name> <base64>\". The third line of the text must be exactly what this prints:")
	w("     sha256sum tagmanifest-sha256.txt\n\n")
	p("The signature is Ed25519 over the text (every byte before the blank line, including the last newline). " +
		"The base64 after the key name decodes to 4 bytes of key id followed by the 64-byte signature. gateway.pub " +
		"is \"<name>+<key id in hex>+<base64>\", and that base64 decodes to the byte 01 followed by the 32-byte " +
		"Ed25519 public key. Any Ed25519 implementation can check it (for example the Go package " +
		"golang.org/x/mod/sumdb/note). checkpoint.txt is signed the same way.")
	p("4. The ledger. For each clip, proofs/<camera>/<clip>.json holds \"body\", the exact bytes the gateway's " +
		"evidence ledger recorded for the clip. Check that:")
	bullet := func(s string) { w("   - " + indent(wrap(s, 70), "     ")[5:] + "\n") }
	bullet("the body's \"sha256\" and \"size\" are the clip's SHA-256 and size in bytes;")
	bullet("the entry hash \"leaf_hash\" is the SHA-256 of a zero byte followed by the body; with jq, for example:")
	w("\n       (printf '\\000'; jq -j .body " + first.proofPath() + ") | sha256sum\n\n")
	bullet("\"tree_size\" is the number on line 2 of checkpoint.txt;")
	bullet("combining \"leaf_hash\" with \"hashes\" gives the root on line 3 of checkpoint.txt (base64), " +
		"by the algorithm of RFC 9162 section 2.1.3.2, where H is SHA-256 and || joins bytes:")
	w(`
       fn = index; sn = tree_size - 1; r = leaf_hash
       for each h in hashes:
         if sn == 0: fail
         if fn is odd or fn == sn:
           r = H(01 || h || r)
           if fn is even: halve fn and sn until fn is odd or fn == 0
         else:
           r = H(01 || r || h)
         halve fn and sn (rounding down)
       the proof holds when sn == 0 and r == root

`)
	w("WHAT THE CHECKS SHOW, AND WHAT THEY DO NOT\n\n")
	p("The manifests show that each clip is the file the package was made from, and the signed tag manifest " +
		"that no file of the package was changed, added or removed after the gateway signed it.")
	p("The gateway records every clip it accepts as an entry in its evidence ledger: camera, clip id, wearer, " +
		"site, recording times, size, SHA-256, when and how it was received, and the hash of the camera's previous " +
		"entry. All entries form a Merkle tree (RFC 6962) whose root the gateway signs at intervals and stores under " +
		"compliance lock, where its administrators cannot change it. An inclusion proof shows that the clip's entry " +
		"was in the ledger when checkpoint.txt was signed (the time on its fourth line), so it was not made up at " +
		"export, and the digest in the entry ties the entry to the clip's bytes. " + pp.SourceOrganization +
		" can show the same signed checkpoint from its store.")
	p("A proof reveals nothing about other people's footage: its hashes are digests of other entries, never " +
		"their content, and the checkpoint holds only the ledger's size and root.")
	p("The checks show that these are the bytes the gateway received and recorded, and who handled them since. " +
		"They do not show what happened in front of the camera, nor that the camera's clock was right.")
	return []byte(strings.TrimRight(b.String(), "\n") + "\n")
}
