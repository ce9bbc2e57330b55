package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/strand-ml/strand/data"
)

// openTextSpec opens the text a data spec names for a tokenizer: "-" is
// stdin, a file, directory or glob is read as strand train --data reads it
// (data.TextFiles: sorted, binary files skipped), the files joined by a
// newline. It returns the total size (-1 for stdin) and notes on stderr
// which files it uses when there is more than one or some were skipped.
func openTextSpec(spec string, stderr io.Writer) (io.Reader, int64, func(), error) {
	if spec == "-" {
		return os.Stdin, -1, func() {}, nil
	}
	files, skipped, err := data.TextFiles(spec)
	if err != nil {
		return nil, 0, nil, err
	}
	if len(files) > 1 || len(skipped) > 0 {
		c := data.Corpus{Paths: files, Skipped: skipped}
		fmt.Fprintf(stderr, "data: %s\n", c.FileSummary())
	}
	var readers []io.Reader
	var opened []*os.File
	closeAll := func() {
		for _, f := range opened {
			f.Close()
		}
	}
	var size int64
	for i, p := range files {
		f, err := os.Open(p)
		if err != nil {
			closeAll()
			return nil, 0, nil, err
		}
		opened = append(opened, f)
		if fi, err := f.Stat(); err == nil {
			size += fi.Size()
		}
		if i > 0 {
			readers = append(readers, strings.NewReader("\n"))
			size++
		}
		readers = append(readers, f)
	}
	return io.MultiReader(readers...), size, closeAll, nil
}
