package dc09

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
)

// padAlphabet is printable ASCII without '|', '[' and ']'. DC-09 allows any
// byte except those three; printable bytes keep decrypted frames readable in
// logs and avoid surprising receivers that treat the plaintext as text.
const padAlphabet = " !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ\\^_`abcdefghijklmnopqrstuvwxyz{}~"

// checkKey accepts the three AES key sizes.
func checkKey(key []byte) error {
	switch len(key) {
	case 16, 24, 32:
		return nil
	}
	return fieldErr("key", "must be 16, 24 or 32 bytes (AES-128/192/256), got %d", len(key))
}

// encrypt returns AES-CBC(key, zero IV) of pad|body, where pad is 1–16 random
// bytes chosen so the whole is a multiple of the 16-byte block. body is
// everything after the data's '[': data][xdata]..._timestamp.
func encrypt(key, body []byte) ([]byte, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, &FieldError{Field: "key", Problem: "cannot make AES cipher", Err: err}
	}
	n := 1 + len(body) // the '|' ending the pad is part of the encrypted region
	padLen := aes.BlockSize - n%aes.BlockSize
	plain := make([]byte, padLen, padLen+n)
	if _, err := rand.Read(plain); err != nil {
		return nil, &FieldError{Field: "key", Problem: "cannot read random pad", Err: err}
	}
	for i, c := range plain {
		plain[i] = padAlphabet[int(c)%len(padAlphabet)]
	}
	plain = append(plain, '|')
	plain = append(plain, body...)
	var iv [aes.BlockSize]byte
	cipher.NewCBCEncrypter(block, iv[:]).CryptBlocks(plain, plain)
	return plain, nil
}

// decryptHex decodes hex ciphertext and decrypts it with AES-CBC(key, zero IV).
func decryptHex(key, text []byte) ([]byte, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	if len(text) == 0 || len(text)%(2*aes.BlockSize) != 0 {
		return nil, fieldErr("data", "ciphertext is %d hex digits, not a non-zero multiple of %d", len(text), 2*aes.BlockSize)
	}
	if n := hexRun(text); n != len(text) {
		return nil, fieldErr("data", "ciphertext has non-hex %q at position %d", text[n], n+1)
	}
	ct := make([]byte, len(text)/2)
	if _, err := hex.Decode(ct, text); err != nil {
		return nil, &FieldError{Field: "data", Problem: "cannot decode hex ciphertext", Err: err}
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, &FieldError{Field: "key", Problem: "cannot make AES cipher", Err: err}
	}
	var iv [aes.BlockSize]byte
	cipher.NewCBCDecrypter(block, iv[:]).CryptBlocks(ct, ct)
	return ct, nil
}
