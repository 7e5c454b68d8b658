"""The judge: the project's digit classifier (``classifier``) and label fidelity of generated digits
(``fidelity``)."""
