package model

import "github.com/strand-ml/strand/gemm"

// Engine is the GEMM engine the model's products run on (shared by every
// Acts of the model).
func (m *GPT) Engine() *gemm.Engine { return m.gemm }
