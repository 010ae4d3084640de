"""monai-bsnet: BS-Net Brixia scoring of COVID-19 pneumonia on chest X-rays, as a MONAI plugin.

Research use only: not a medical device, not for diagnosis.
"""

__version__ = "0.3.7"
