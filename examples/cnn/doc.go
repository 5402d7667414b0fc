// Package cnn trains GoMLX's own MNIST CNN (github.com/gomlx/gomlx/examples/mnist.CnnModelGraph:
// convolutions, batch normalization, max-pooling, dropout, a dense head) with exact gradient
// regularization, gr.DoubleBackprop, on the XLA backend. The model is GoMLX's, unchanged; the one line
// that makes double backpropagation possible is grgrad.Install() (optimizers/grgrad), which gives the
// gradients of convolutions, pooling and batch normalization gradients of their own.
//
// Its test (cnn_test.go) is the example: GRADREG_GRADIENTS unset, GOMLX_BACKEND=xla:cpu
//
//	go test ./examples/cnn
//
// trains 20 DB steps on 256 MNIST images and checks that the loss falls, and that without
// grgrad.Install the error names the op and the remedy.
package cnn
