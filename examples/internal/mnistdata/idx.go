package mnistdata

import (
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"os"
)

// IDX magic numbers of the files: unsigned bytes (0x08) with 3 dimensions (images) or 1 (labels).
const (
	magicImages = 0x00000803
	magicLabels = 0x00000801
)

// readIDXGzip reads the gzipped IDX file at path to the end and returns its dimensions and its data. It
// verifies everything the file can tell: the gzip header, the deflate stream, the CRC-32 and the length
// (ISIZE) of every gzip member (Go's gzip.Reader checks both at the end of each member, which is why the
// whole stream is read, never only the part needed), the IDX magic number (want), and that the data is
// exactly the product of the dimensions, no byte more or less.
func readIDXGzip(path string, want uint32) (dims []int, data []byte, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, nil, fmt.Errorf("not a gzip file: %w", err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		if err == io.ErrUnexpectedEOF {
			return nil, nil, fmt.Errorf("gzip stream truncated after %d bytes of data: %w", len(raw), err)
		}
		return nil, nil, fmt.Errorf("gzip stream corrupt (deflate data, CRC-32 or length check) after %d bytes of "+
			"data: %w", len(raw), err)
	}
	if err := zr.Close(); err != nil {
		return nil, nil, fmt.Errorf("gzip stream: %w", err)
	}
	if len(raw) < 4 {
		return nil, nil, fmt.Errorf("%d bytes of data, too short for an IDX header", len(raw))
	}
	magic := binary.BigEndian.Uint32(raw)
	if magic != want {
		return nil, nil, fmt.Errorf("IDX magic number 0x%08x, want 0x%08x (unsigned bytes, %d dimensions)", magic,
			want, want&0xff)
	}
	rank := int(want & 0xff)
	header := 4 + 4*rank
	if len(raw) < header {
		return nil, nil, fmt.Errorf("%d bytes of data, too short for an IDX header of %d dimensions", len(raw), rank)
	}
	size := 1
	for i := range rank {
		d := int(binary.BigEndian.Uint32(raw[4+4*i:]))
		if d <= 0 || d > len(raw)/size {
			return nil, nil, fmt.Errorf("IDX dimension %d is %d: the file has only %d bytes of data", i, d, len(raw))
		}
		dims = append(dims, d)
		size *= d
	}
	if got := len(raw) - header; got != size {
		return nil, nil, fmt.Errorf("IDX dimensions %v hold %d bytes of data, the file has %d", dims, size, got)
	}
	return dims, raw[header:], nil
}
