"""The pattern of TorchServe's examples/custom_metrics handler, on the 8x8 digits MLP.

Every kind of call that example makes on ``context.metrics``; the answer is the
predicted class index per image.
"""

import time

from torchvision import transforms
from ts.metrics.dimension import Dimension
from ts.metrics.metric_type_enum import MetricTypes
from ts.torch_handler.image_classifier import ImageClassifier


class MetricsDigits(ImageClassifier):
    image_processing = transforms.Compose([
        transforms.ToTensor(),
        transforms.Lambda(lambda t: t.flatten()),
    ])

    def initialize(self, context):
        super().initialize(context)
        metrics = context.metrics
        self.requests_seen = metrics.add_metric_to_cache(
            metric_name="ExampleRequestCount", unit="count", dimension_names=[],
            metric_type=MetricTypes.COUNTER,
        )
        metrics.add_metric_to_cache(
            metric_name="ExamplePreprocessCalls", unit="count",
            dimension_names=["ModelName"], metric_type=MetricTypes.COUNTER,
        )
        metrics.add_metric(name="ExampleInitializeCalls", value=1, unit="count",
                           metric_type=MetricTypes.COUNTER)

    def preprocess(self, data):
        start = time.time()
        metrics = self.context.metrics
        self.requests_seen.add_or_update(value=1, dimension_values=[])
        metrics.get_metric(metric_name="ExamplePreprocessCalls",
                           metric_type=MetricTypes.COUNTER).add_or_update(
            value=1, dimension_values=[self.context.model_name])
        # declared only in the server's metrics_config (model_metrics section)
        metrics.get_metric(metric_name="ExampleBatchSize",
                           metric_type=MetricTypes.GAUGE).add_or_update(
            value=len(data), dimension_values=[self.context.model_name])
        body = data[0].get("body")
        metrics.add_size(name="ExampleImageSize", value=len(body) / 1024, idx=None, unit="kB")
        images = ImageClassifier.preprocess(self, data)
        metrics.add_time(name="ExampleMethodTime", value=(time.time() - start) * 1000,
                         idx=None, unit="ms",
                         dimensions=[Dimension(name="MethodName", value="preprocess")],
                         metric_type=MetricTypes.GAUGE)
        return images

    def postprocess(self, data):
        self.context.metrics.add_counter(name="ExamplePostprocessCalls", value=1, idx=None,
                                         dimensions=[])
        self.context.metrics.add_percent(name="ExamplePercent", value=50, idx=None,
                                         dimensions=[], metric_type=MetricTypes.HISTOGRAM)
        return data.argmax(1).flatten().tolist()
