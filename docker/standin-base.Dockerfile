# `make test-docker` only: a stand-in for pytorch/pytorch:*-runtime, which cannot be pulled here.
# Debian bookworm (debootstrap, imported as ROOTFS) with Python 3.11 and torch's CPU build in
# /opt/conda, where the official image keeps its Python and torch. The build context holds the
# torch wheel and with-ca.sh (docker/test-image.sh puts them there).
ARG ROOTFS
FROM ${ROOTFS}
ENV PATH=/opt/conda/bin:$PATH \
    DEBIAN_FRONTEND=noninteractive \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
COPY with-ca.sh /usr/local/bin/with-ca
RUN python3 -m venv /opt/conda
RUN --mount=type=secret,id=ca_bundle --mount=type=bind,target=/context \
    with-ca pip install -q /context/torch-*.whl \
    && python -c 'import torch; print("stand-in base: torch", torch.__version__)'
