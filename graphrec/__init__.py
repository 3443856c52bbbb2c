"""graphrec: multimodal recommendation with graph neural networks.

The package follows the data: ``graphrec.data`` (formats, conversion, the typed
``Dataset``) -> ``graphrec.encoders`` -> ``graphrec.graph`` -> ``graphrec.models``
-> ``graphrec.training`` -> ``graphrec.evaluation`` -> ``graphrec.serving``.
"""

from graphrec.data.convert import ConvertConfig, convert
from graphrec.data.dataset import Dataset, ModalityFeatures, load_dataset
from graphrec.errors import DataFormatError, GraphrecError

__version__ = "0.1.0"

__all__ = ["ConvertConfig", "DataFormatError", "Dataset", "GraphrecError", "ModalityFeatures", "__version__",
           "convert", "load_dataset"]
