module github.com/strand-ml/strand

go 1.26.8
