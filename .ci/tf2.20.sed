# constraints.txt -> the TensorFlow 2.20 leg of .ci/run (the same pins, TensorFlow's own packages at 2.20)
s/^tensorflow==.*/tensorflow==2.20.0/
s/^tf_keras==.*/tf_keras==2.20.1/
s/^tensorflow-text==.*/tensorflow-text==2.20.1/
s/^tensorboard==.*/tensorboard==2.20.0/
