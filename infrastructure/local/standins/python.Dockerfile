# Offline stand-in for python:3.13-slim, which `cargo xtask local up` builds only where that
# image cannot be pulled, as root on Debian: Debian trixie's Python 3.13 from a debootstrap root
# filesystem (root.tar in the build context) with the host's CA bundle (host-ca.crt: TLS to PyPI
# may go through a CA only the host trusts), and pip usable system-wide, as in the official image.
FROM scratch
ADD root.tar /
COPY host-ca.crt /etc/ssl/certs/ca-certificates.crt
COPY host-ca.crt /usr/local/share/ca-certificates/host-bundle.crt
# The tree comes without apt's lists, docs and man pages; apt wants lists/partial.
RUN rm -f /usr/lib/python3*/EXTERNALLY-MANAGED \
 && ln -s /usr/bin/python3 /usr/local/bin/python \
 && ln -s /usr/bin/pip3 /usr/local/bin/pip \
 && mkdir -p /var/lib/apt/lists/partial
# pip from PyPI (e.g. upgraded in a venv) uses certifi, which lacks the host's CA.
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt
LABEL xtask.local-stack.stand-in=true
CMD ["python3"]
